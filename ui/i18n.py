"""The page's languages: English, Arabic, Persian and Hebrew, the last three laid out right to left.

All labels come from one table, `TABLE`: each row is the English text as the page is built with it,
then its Arabic, Persian and Hebrew. `relabel(blocks, lang)` finds every tab, accordion, button,
field label and fixed Markdown on the page whose English text is in the table and returns the
updates that put it in `lang`; the language switch runs it for that browser session only (the
page's direction is set in the browser by `DIRECTION_JS`). Help texts under the fields, the
messages the engine writes, and the data itself stay as they are.

    Part of the studio page: `studio`; `pytest tests/test_i18n.py` names any page label missing from the table.
"""

from __future__ import annotations

import gradio as gr

LANGUAGES = [("English", "en"), ("العربية", "ar"), ("فارسی", "fa"), ("עברית", "he")]
CODES = [code for _, code in LANGUAGES]
RTL = ("ar", "fa", "he")

# Sets the page's direction and language in the browser; returns the language for the server side.
DIRECTION_JS = """(lang) => {
  const root = document.documentElement;
  root.lang = lang;
  root.dir = ["ar", "fa", "he"].includes(lang) ? "rtl" : "ltr";
  return lang;
}"""
# The browser's own language when it is one of ours, else English.
BROWSER_LANGUAGE_JS = """() => {
  const lang = (navigator.language || "en").slice(0, 2).toLowerCase();
  return ["ar", "fa", "he"].includes(lang) ? lang : "en";
}"""

# English | Arabic | Persian | Hebrew
TABLE: list[tuple[str, str, str, str]] = [
    ("Language", "اللغة", "زبان", "שפה"),
    ("# Fine-tuning studio\nUpload chat data, fine-tune with LoRA, and compare the fine-tuned model with retrieval "
     "(RAG) on your own questions.",
     "# استوديو الضبط الدقيق\nارفع بيانات محادثة، واضبط النموذج بدقة باستخدام LoRA، وقارن النموذج المضبوط "
     "بالاسترجاع (RAG) على أسئلتك.",
     "# استودیوی تنظیم دقیق\nداده‌های گفتگو را بارگذاری کنید، مدل را با LoRA تنظیم دقیق کنید و آن را با بازیابی "
     "(RAG) روی پرسش‌های خودتان مقایسه کنید.",
     "# סטודיו לכוונון עדין\nהעלו נתוני שיחה, כווננו את המודל עם LoRA, והשוו את המודל המכוונן לאחזור (RAG) על "
     "השאלות שלכם."),
    # Tabs
    ("1 · Data", "١ · البيانات", "۱ · داده‌ها", "1 · נתונים"),
    ("2 · Method", "٢ · الطريقة", "۲ · روش", "2 · שיטה"),
    ("3 · Train", "٣ · التدريب", "۳ · آموزش", "3 · אימון"),
    ("4 · Compare", "٤ · المقارنة", "۴ · مقایسه", "4 · השוואה"),
    ("5 · Chat", "٥ · المحادثة", "۵ · گفتگو", "5 · צ'אט"),
    ("6 · Runs and export", "٦ · التشغيلات والتصدير", "۶ · اجراها و خروجی", "6 · הרצות וייצוא"),
    # Data
    ("Training data (.jsonl, .json, .csv, .tsv, .parquet, .txt); several files at once are fine",
     "بيانات التدريب (.jsonl, .json, .csv, .tsv, .parquet, .txt)؛ يمكن رفع عدة ملفات معًا",
     "داده‌های آموزش (.jsonl, .json, .csv, .tsv, .parquet, .txt)؛ چند فایل با هم هم می‌شود",
     "נתוני אימון (.jsonl, .json, .csv, .tsv, .parquet, .txt); אפשר כמה קבצים יחד"),
    ("Use the bundled sample", "استخدم العينة المرفقة", "از نمونهٔ همراه استفاده کن", "השתמשו בדוגמה המצורפת"),
    ("Validation split", "نسبة التحقق", "سهم اعتبارسنجی", "חלק האימות"),
    ("...or a validation file", "...أو ملف تحقق", "...یا فایل اعتبارسنجی", "...או קובץ אימות"),
    ("Column with the question / prompt", "عمود السؤال / الموجّه", "ستون پرسش / پرامپت", "עמודת השאלה / הפרומפט"),
    ("Column with the answer", "عمود الإجابة", "ستون پاسخ", "עמודת התשובה"),
    ("System prompt column (optional)", "عمود موجّه النظام (اختياري)", "ستون پرامپت سیستم (اختیاری)",
     "עמודת הנחיית מערכת (רשות)"),
    ("Apply mapping", "طبّق الربط", "اعمال نگاشت", "החילו מיפוי"),
    ("Preview (first 20 examples)", "معاينة (أول 20 مثالًا)", "پیش‌نمایش (۲۰ نمونهٔ اول)", "תצוגה מקדימה (20 הדוגמאות הראשונות)"),
    ("What gets trained", "ما الذي يُدرَّب", "چه چیزی آموزش می‌بیند", "מה מאומן"),
    ("Example number", "رقم المثال", "شمارهٔ نمونه", "מספר דוגמה"),
    ("The loss uses", "تستخدم الخسارة", "زیان از این استفاده می‌کند", "ההפסד משתמש ב"),
    ("The example as the model sees it, with the chat template", "المثال كما يراه النموذج، مع قالب المحادثة",
     "نمونه آن‌گونه که مدل می‌بیند، با قالب گفتگو", "הדוגמה כפי שהמודל רואה אותה, עם תבנית השיחה"),
    ("Export as chat JSONL (for hosted fine-tuning services)", "صدّر بصيغة JSONL للمحادثة (لخدمات الضبط المستضافة)",
     "خروجی JSONL گفتگو (برای سرویس‌های میزبانی‌شدهٔ تنظیم دقیق)", "ייצוא כ-JSONL של שיחה (לשירותי כוונון מתארחים)"),
    ("Exported file", "الملف المصدَّر", "فایل خروجی", "הקובץ המיוצא"),
    # Method
    ("Decide **how** to fine-tune (or whether RAG is the better answer) before anything trains. Next step: the "
     "**Train** tab, with the method picked here.",
     "قرّر **كيف** تضبط النموذج (أو إن كان RAG هو الجواب الأفضل) قبل أي تدريب. الخطوة التالية: تبويب **التدريب** "
     "بالطريقة المختارة هنا.",
     "پیش از هر آموزشی تصمیم بگیرید **چگونه** تنظیم دقیق کنید (یا آیا RAG پاسخ بهتری است). گام بعد: زبانهٔ "
     "**آموزش**، با روشی که اینجا انتخاب شد.",
     "החליטו **איך** לכוונן (או אם RAG היא התשובה הטובה יותר) לפני כל אימון. הצעד הבא: לשונית **אימון**, עם "
     "השיטה שנבחרה כאן."),
    ("RAG, fine-tuning, or both?", "RAG أم الضبط الدقيق أم كلاهما؟", "RAG، تنظیم دقیق یا هر دو؟", "RAG, כוונון, או שניהם?"),
    ("Does the answer need facts that change often, or that must be cited with a source?",
     "هل تحتاج الإجابة إلى حقائق تتغير كثيرًا أو يجب ذكر مصدرها؟",
     "آیا پاسخ به واقعیت‌هایی نیاز دارد که زود تغییر می‌کنند یا باید با منبع ذکر شوند؟",
     "האם התשובה צריכה עובדות שמשתנות לעיתים קרובות, או שיש לצטט את מקורן?"),
    ("Is the need a stable domain vocabulary, format, tone or behaviour?",
     "هل الحاجة إلى مفردات مجال ثابتة أو تنسيق أو نبرة أو سلوك؟",
     "آیا نیاز، واژگان ثابت یک حوزه، قالب، لحن یا رفتار است؟",
     "האם הצורך הוא אוצר מילים קבוע של תחום, תבנית, טון או התנהגות?"),
    ("Must every answer be traceable to a document?", "هل يجب أن تُنسب كل إجابة إلى مستند؟",
     "آیا هر پاسخ باید به یک سند قابل ردیابی باشد؟", "האם כל תשובה חייבת להיות ניתנת למעקב למסמך?"),
    ("How many good example answers (question and answer pairs) do you have?",
     "كم لديك من أمثلة الإجابات الجيدة (أزواج سؤال وجواب)؟",
     "چند نمونه پاسخ خوب (جفت پرسش و پاسخ) دارید؟", "כמה דוגמאות טובות של תשובות (זוגות שאלה ותשובה) יש לכם?"),
    ("Did you try prompt engineering or few-shot examples, and how good was it?",
     "هل جرّبت هندسة الموجّهات أو الأمثلة القليلة، وما مدى جودتها؟",
     "آیا مهندسی پرامپت یا چند نمونه را امتحان کردید و چقدر خوب بود؟",
     "האם ניסיתם הנדסת פרומפטים או דוגמאות מעטות, וכמה טוב זה עבד?"),
    ("Check it on your own questions in Compare", "تحقّق منه على أسئلتك في المقارنة",
     "آن را با پرسش‌های خودتان در مقایسه بسنجید", "בדקו זאת על השאלות שלכם בהשוואה"),
    ("Your scenarios", "سيناريوهاتك", "سناریوهای شما", "התרחישים שלכם"),
    ("Use the top method on the Train tab", "استخدم الطريقة الأولى في تبويب التدريب",
     "روش برتر را در زبانهٔ آموزش به کار ببر", "השתמשו בשיטה המובילה בלשונית האימון"),
    ("Memory, time and cost estimate", "تقدير الذاكرة والوقت والتكلفة", "برآورد حافظه، زمان و هزینه",
     "הערכת זיכרון, זמן ועלות"),
    ("Method", "الطريقة", "روش", "שיטה"),
    ("Device", "الجهاز", "دستگاه", "התקן"),
    ("GPUs", "وحدات GPU", "پردازنده‌های گرافیکی", "מעבדים גרפיים"),
    ("ZeRO stage", "مرحلة ZeRO", "مرحلهٔ ZeRO", "שלב ZeRO"),
    ("Offload", "التفريغ", "برون‌سپاری", "העברה"),
    ("Batch size", "حجم الدفعة", "اندازهٔ دسته", "גודל אצווה"),
    ("Sequence length", "طول التسلسل", "طول دنباله", "אורך רצף"),
    ("LoRA rank", "رتبة LoRA", "رتبهٔ LoRA", "דרגת LoRA"),
    ("Gradient checkpointing", "نقاط تفتيش التدرج", "ذخیرهٔ میانی گرادیان", "נקודות ביקורת לגרדיאנט"),
    ("Epochs", "الحقب", "دوره‌ها", "תקופות"),
    ("Price per GPU-hour", "السعر لكل ساعة GPU", "قیمت هر ساعت GPU", "מחיר לשעת GPU"),
    ("Estimate", "قدّر", "برآورد", "הערכה"),
    ("Probe: measure a few steps of each method on your model and data",
     "اختبار: قِس بضع خطوات لكل طريقة على نموذجك وبياناتك",
     "آزمایش: چند گام از هر روش را روی مدل و داده‌های خود اندازه بگیرید",
     "בדיקה: מדדו כמה צעדים של כל שיטה על המודל והנתונים שלכם"),
    ("Methods", "الطرق", "روش‌ها", "שיטות"),
    ("Steps each", "خطوات لكل طريقة", "گام برای هر کدام", "צעדים לכל אחת"),
    ("Run the probe", "شغّل الاختبار", "آزمایش را اجرا کن", "הריצו את הבדיקה"),
    ("### Measure it on my documents\nWrites questions and answers from your documents, trains a plain and a "
     "retrieval-aware (RAFT) fine-tune, and scores base, fine-tuned and RAFT, each with and without retrieval, on "
     "questions held out: the answer with its intervals.",
     "### قِسها على مستنداتي\nيكتب أسئلة وأجوبة من مستنداتك، ويدرّب ضبطًا عاديًا وضبطًا واعيًا بالاسترجاع "
     "(RAFT)، ويقيس النموذج الأساسي والمضبوط وRAFT، كلًّا مع الاسترجاع وبدونه، على أسئلة محجوزة: الجواب مع فتراته.",
     "### روی اسناد من اندازه بگیر\nاز اسناد شما پرسش و پاسخ می‌نویسد، یک تنظیم ساده و یک تنظیم آگاه از بازیابی "
     "(RAFT) آموزش می‌دهد و مدل پایه، تنظیم‌شده و RAFT را، هر کدام با و بدون بازیابی، روی پرسش‌های کنارگذاشته "
     "می‌سنجد: پاسخ با بازه‌هایش.",
     "### מדדו את זה על המסמכים שלי\nכותב שאלות ותשובות מהמסמכים שלכם, מאמן כוונון רגיל וכוונון מודע-אחזור "
     "(RAFT), ומודד את הבסיס, המכוונן ו-RAFT, כל אחד עם אחזור ובלעדיו, על שאלות שהוחזקו בצד: התשובה עם הרווחים שלה."),
    ("Your documents", "مستنداتك", "اسناد شما", "המסמכים שלכם"),
    ("Time budget (minutes)", "الميزانية الزمنية (دقائق)", "بودجهٔ زمانی (دقیقه)", "תקציב זמן (דקות)"),
    ("Measure it on my documents", "قِسها على مستنداتي", "روی اسناد من اندازه بگیر", "מדדו את זה על המסמכים שלי"),
    ("Stop the measurement", "أوقف القياس", "اندازه‌گیری را متوقف کن", "עצרו את המדידה"),
    # Data: from documents
    ("From documents: write questions and answers with their evidence",
     "من المستندات: اكتب أسئلة وأجوبة مع أدلتها", "از اسناد: پرسش و پاسخ با شواهدشان بنویس",
     "ממסמכים: כתבו שאלות ותשובות עם הראיות שלהן"),
    ("Only documents? The studio writes question-answer pairs from them, each with a quote from the passage it "
     "comes from, and keeps only the pairs that pass its checks (the report says what was dropped and why). Some "
     "passages are held out, never trained on, to test with.",
     "لديك مستندات فقط؟ يكتب الاستوديو منها أزواج سؤال وجواب، لكلٍّ منها اقتباس من المقطع الذي جاء منه، ويحتفظ "
     "بالأزواج التي تجتاز فحوصه فقط (يذكر التقرير ما حُذف ولماذا). تُحجز بعض المقاطع ولا يُدرَّب عليها، للاختبار.",
     "فقط سند دارید؟ استودیو از آن‌ها جفت‌های پرسش و پاسخ می‌نویسد، هر کدام با نقل‌قولی از بخشی که از آن آمده، و "
     "فقط جفت‌هایی را نگه می‌دارد که از بررسی‌هایش بگذرند (گزارش می‌گوید چه حذف شد و چرا). برخی بخش‌ها برای آزمون "
     "کنار گذاشته می‌شوند و هرگز آموزش داده نمی‌شوند.",
     "רק מסמכים? הסטודיו כותב מהם זוגות של שאלה ותשובה, כל אחד עם ציטוט מהקטע שממנו בא, ושומר רק את הזוגות "
     "שעוברים את הבדיקות שלו (הדוח אומר מה הושמט ולמה). חלק מהקטעים מוחזקים בצד ולא מאומנים עליהם, לבדיקה."),
    ("Documents", "المستندات", "اسناد", "מסמכים"),
    ("Phrasings of each question", "صيغ كل سؤال", "صورت‌بندی‌های هر پرسش", "ניסוחים לכל שאלה"),
    ("Train with retrieval (RAFT): the passage among distractors in each prompt",
     "درّب مع الاسترجاع (RAFT): المقطع بين مقاطع مشتِّتة في كل موجّه",
     "آموزش با بازیابی (RAFT): بخش مربوط در میان بخش‌های گمراه‌کننده در هر پرامپت",
     "אימון עם אחזור (RAFT): הקטע בין קטעים מסיחים בכל הנחיה"),
    ("Write questions and answers", "اكتب أسئلة وأجوبة", "پرسش و پاسخ بنویس", "כתבו שאלות ותשובות"),
    # Runs: decisions
    ("Measured decisions: fine-tune, RAG, or both? (Method tab)",
     "قرارات مُقاسة: ضبط دقيق، أم RAG، أم كلاهما؟ (تبويب الطريقة)",
     "تصمیم‌های اندازه‌گیری‌شده: تنظیم دقیق، RAG یا هر دو؟ (زبانهٔ روش)",
     "החלטות שנמדדו: כוונון, RAG או שניהם? (לשונית השיטה)"),
    ("Decision", "القرار", "تصمیم", "החלטה"),
    # Train
    ("Model", "النموذج", "مدل", "מודל"),
    ("Max steps", "أقصى عدد خطوات", "حداکثر گام‌ها", "מספר צעדים מרבי"),
    ("Learning rate", "معدل التعلم", "نرخ یادگیری", "קצב למידה"),
    ("Max length", "أقصى طول", "حداکثر طول", "אורך מרבי"),
    ("Advanced: speed, several GPUs (ZeRO) and the model's own code",
     "متقدم: السرعة وعدة وحدات GPU (ZeRO) وشيفرة النموذج الخاصة",
     "پیشرفته: سرعت، چند GPU (ZeRO) و کد خود مدل", "מתקדם: מהירות, כמה מעבדים גרפיים (ZeRO) והקוד של המודל עצמו"),
    ("Processes (GPUs)", "العمليات (وحدات GPU)", "فرایندها (GPUها)", "תהליכים (מעבדים גרפיים)"),
    ("Precision", "الدقة العددية", "دقت عددی", "דיוק מספרי"),
    ("LoRA alpha", "ألفا LoRA", "آلفای LoRA", "אלפא של LoRA"),
    ("Force this precision", "افرض هذه الدقة", "همین دقت را اجبار کن", "לכפות את הדיוק הזה"),
    ("Padding-free batches", "دفعات بلا حشو", "دسته‌های بدون لایه‌گذاری", "אצוות ללא ריפוד"),
    ("Packing", "التعبئة", "بسته‌بندی", "אריזה"),
    ("Trust the model's own code (trust_remote_code)", "ثق بشيفرة النموذج الخاصة (trust_remote_code)",
     "به کد خود مدل اعتماد کن (trust_remote_code)", "לתת אמון בקוד של המודל (trust_remote_code)"),
    ("Revision (commit hash)", "المراجعة (بصمة الإيداع)", "نسخه (هش کامیت)", "גרסה (גיבוב קומיט)"),
    ("The same run from the command line", "التشغيل نفسه من سطر الأوامر", "همین اجرا از خط فرمان",
     "אותה הרצה משורת הפקודה"),
    ("run.yaml", "run.yaml", "run.yaml", "run.yaml"),
    ("Start training", "ابدأ التدريب", "شروع آموزش", "התחילו אימון"),
    ("Stop", "أوقف", "توقف", "עצירה"),
    ("Resume", "استأنف", "ادامه", "המשך"),
    ("Smoothing of the train loss", "تنعيم خسارة التدريب", "هموارسازی زیان آموزش", "החלקת הפסד האימון"),
    ("Loss", "الخسارة", "زیان", "הפסד"),
    ("Tokens per second", "رموز في الثانية", "توکن در ثانیه", "אסימונים לשנייה"),
    # Compare
    ("Ask one question of four answerers side by side: the base model and the fine-tuned run, each alone and "
     "with retrieval from a document collection. Next step: **Runs and export**, to download or publish the model.",
     "اطرح سؤالًا واحدًا على أربعة مجيبين جنبًا إلى جنب: النموذج الأساسي والتشغيل المضبوط، كلٌّ وحده ومع الاسترجاع "
     "من مجموعة مستندات. الخطوة التالية: **التشغيلات والتصدير** لتنزيل النموذج أو نشره.",
     "یک پرسش را از چهار پاسخ‌دهنده کنار هم بپرسید: مدل پایه و اجرای تنظیم‌شده، هر یک به تنهایی و با بازیابی از "
     "مجموعهٔ اسناد. گام بعد: **اجراها و خروجی**، برای دانلود یا انتشار مدل.",
     "שאלו שאלה אחת ארבעה עונים זה לצד זה: מודל הבסיס וההרצה המכווננת, כל אחד לבד ועם אחזור מאוסף מסמכים. "
     "הצעד הבא: **הרצות וייצוא**, כדי להוריד או לפרסם את המודל."),
    ("Documents for retrieval", "مستندات للاسترجاع", "اسناد برای بازیابی", "מסמכים לאחזור"),
    ("Documents (.txt, .md, .markdown, .html, .htm, .pdf, .docx, .jsonl, .csv); several files at once are fine",
     "المستندات (.txt, .md, .markdown, .html, .htm, .pdf, .docx, .jsonl, .csv)؛ يمكن رفع عدة ملفات معًا",
     "اسناد (.txt, .md, .markdown, .html, .htm, .pdf, .docx, .jsonl, .csv)؛ چند فایل با هم هم می‌شود",
     "מסמכים (.txt, .md, .markdown, .html, .htm, .pdf, .docx, .jsonl, .csv); אפשר כמה קבצים יחד"),
    ("Collection name", "اسم المجموعة", "نام مجموعه", "שם האוסף"),
    ("Text column (for .jsonl / .csv)", "عمود النص (لملفات ‎.jsonl / .csv)", "ستون متن (برای ‎.jsonl / .csv)",
     "עמודת הטקסט (עבור ‎.jsonl / .csv)"),
    ("Index documents", "فهرِس المستندات", "نمایه‌سازی اسناد", "אנדקסו מסמכים"),
    ("Document in this collection", "مستند في هذه المجموعة", "سندی در این مجموعه", "מסמך באוסף הזה"),
    ("Remove it from the collection", "أزله من المجموعة", "آن را از مجموعه حذف کن", "הסירו אותו מהאוסף"),
    ("Collection", "المجموعة", "مجموعه", "אוסף"),
    ("Fine-tuned run", "التشغيل المضبوط", "اجرای تنظیم‌شده", "ההרצה המכווננת"),
    ("Refresh runs", "حدّث التشغيلات", "تازه‌سازی اجراها", "רעננו הרצות"),
    ("Retrieval settings", "إعدادات الاسترجاع", "تنظیمات بازیابی", "הגדרות אחזור"),
    ("Passages per answer (top-k)", "مقاطع لكل إجابة (top-k)", "قطعه برای هر پاسخ (top-k)", "קטעים לכל תשובה (top-k)"),
    ("Minimum score", "أدنى درجة", "کمینهٔ امتیاز", "ציון מינימלי"),
    ("Diversity (MMR); 0 = off", "التنوع (MMR)؛ 0 = معطّل", "تنوع (MMR)؛ ۰ = خاموش", "גיוון (MMR); 0 = כבוי"),
    ("Cross-encoder reranker (optional)", "معيد ترتيب cross-encoder (اختياري)", "بازرتبه‌ساز cross-encoder (اختیاری)",
     "מדרג מחדש cross-encoder (רשות)"),
    ("Question", "السؤال", "پرسش", "שאלה"),
    ("Ask all four", "اسأل الأربعة", "از هر چهار بپرس", "שאלו את כל הארבעה"),
    ("#### base", "#### الأساسي", "#### پایه", "#### בסיס"),
    ("#### base + RAG", "#### الأساسي + RAG", "#### پایه + RAG", "#### בסיס + RAG"),
    ("#### fine-tuned", "#### المضبوط", "#### تنظیم‌شده", "#### מכוונן"),
    ("#### fine-tuned + RAG", "#### المضبوط + RAG", "#### تنظیم‌شده + RAG", "#### מכוונן + RAG"),
    ("Evaluate on questions with reference answers", "قيّم على أسئلة لها إجابات مرجعية",
     "ارزیابی روی پرسش‌هایی با پاسخ مرجع", "הערכה על שאלות עם תשובות ייחוס"),
    ("Questions (.jsonl or .csv with question, answer); empty = the 20 held-back Zorvane questions",
     "الأسئلة (‎.jsonl أو ‎.csv فيها question وanswer)؛ فارغ = أسئلة Zorvane العشرون المحجوزة",
     "پرسش‌ها (‎.jsonl یا ‎.csv با question و answer)؛ خالی = ۲۰ پرسش کنارگذاشتهٔ Zorvane",
     "שאלות (‎.jsonl או ‎.csv עם question ו-answer); ריק = 20 שאלות Zorvane השמורות"),
    ("Evaluate the four columns", "قيّم الأعمدة الأربعة", "ارزیابی چهار ستون", "הערכת ארבע העמודות"),
    ("Summary per column", "ملخص لكل عمود", "خلاصه برای هر ستون", "סיכום לכל עמודה"),
    ("Per question", "لكل سؤال", "برای هر پرسش", "לכל שאלה"),
    ("Scores per column, with 95% intervals", "الدرجات لكل عمود، مع فترات ثقة 95%",
     "امتیازها برای هر ستون، با بازه‌های اطمینان ۹۵٪", "ציונים לכל עמודה, עם רווחי סמך של 95%"),
    ("Which column is better, and how sure (paired bootstrap over the questions)",
     "أي عمود أفضل، وبأي درجة من اليقين (bootstrap مزدوج على الأسئلة)",
     "کدام ستون بهتر است و با چه اطمینانی (bootstrap جفتی روی پرسش‌ها)",
     "איזו עמודה טובה יותר, ובאיזו ודאות (bootstrap מזווג על פני השאלות)"),
    ("Download (CSV, JSON)", "تنزيل (CSV, JSON)", "دانلود (CSV, JSON)", "הורדה (CSV, JSON)"),
    # Runs and export
    ("Your runs on this machine, newest first (they survive a restart). Pick runs to draw their loss curves together "
     "and see the settings they differ in; export one below.",
     "تشغيلاتك على هذا الجهاز، الأحدث أولًا (تبقى بعد إعادة التشغيل). اختر تشغيلات لرسم منحنيات خسارتها معًا "
     "ورؤية الإعدادات التي تختلف فيها؛ وصدّر واحدًا في الأسفل.",
     "اجراهای شما روی این ماشین، تازه‌ترین اول (پس از راه‌اندازی دوباره می‌مانند). اجراهایی را انتخاب کنید تا منحنی "
     "زیانشان با هم رسم شود و تنظیمات متفاوتشان دیده شود؛ یکی را در پایین خروجی بگیرید.",
     "ההרצות שלכם במכונה הזו, החדשה ראשונה (הן שורדות הפעלה מחדש). בחרו הרצות כדי לצייר את עקומות ההפסד שלהן יחד "
     "ולראות במה ההגדרות שלהן שונות; ייצאו אחת למטה."),
    ("Refresh", "حدّث", "تازه‌سازی", "רענון"),
    ("Runs to compare", "تشغيلات للمقارنة", "اجراها برای مقایسه", "הרצות להשוואה"),
    ("Training loss", "خسارة التدريب", "زیان آموزش", "הפסד האימון"),
    ("Settings that differ", "الإعدادات المختلفة", "تنظیمات متفاوت", "הגדרות שונות"),
    ("### Export\nDownload the adapter or the merged model, write an ONNX model, or push to the Hugging Face Hub "
     "(token from `HF_TOKEN`; the repository is private).",
     "### التصدير\nنزّل المهايئ أو النموذج المدمج، أو اكتب نموذج ONNX، أو ادفع إلى Hugging Face Hub "
     "(الرمز من `HF_TOKEN`؛ المستودع خاص).",
     "### خروجی\nآداپتور یا مدل ادغام‌شده را دانلود کنید، مدل ONNX بنویسید یا به Hugging Face Hub بفرستید "
     "(توکن از `HF_TOKEN`؛ مخزن خصوصی است).",
     "### ייצוא\nהורידו את המתאם או את המודל הממוזג, כתבו מודל ONNX, או דחפו ל-Hugging Face Hub "
     "(האסימון מ-`HF_TOKEN`; המאגר פרטי)."),
    ("Run", "التشغيل", "اجرا", "הרצה"),
    ("What", "ماذا", "چه چیزی", "מה"),
    ("Hub repository (user/name)", "مستودع Hub (user/name)", "مخزن Hub (user/name)", "מאגר ב-Hub (user/name)"),
    ("Open in Compare", "افتح في المقارنة", "باز کردن در مقایسه", "פתחו בהשוואה"),
    ("Zip for download", "اضغط للتنزيل", "فشرده برای دانلود", "כווצו להורדה"),
    ("ONNX", "ONNX", "ONNX", "ONNX"),
    ("Push to the Hub", "ادفع إلى Hub", "ارسال به Hub", "דחפו ל-Hub"),
    ("Stop this run", "أوقف هذا التشغيل", "این اجرا را متوقف کنید", "עצרו את ההרצה הזו"),
    ("Admin: hand the picked run to someone", "المسؤول: سلّم التشغيل المختار إلى شخص آخر",
     "مدیر: اجرای انتخاب‌شده را به کسی بسپارید", "מנהל: העבירו את ההרצה שנבחרה למישהו"),
    ("New owner (user:NAME, hf:NAME or local)", "المالك الجديد (user:NAME أو hf:NAME أو local)",
     "مالک تازه (user:NAME، hf:NAME یا local)", "בעלים חדשים (user:NAME, hf:NAME או local)"),
    ("Hand it over", "سلّمه", "بسپارید", "העבירו"),
    ("Download", "تنزيل", "دانلود", "הורדה"),
    ("GGUF number format", "صيغة أرقام GGUF", "قالب عددی GGUF", "פורמט המספרים של GGUF"),
    ("GGUF for llama.cpp / Ollama", "GGUF لـ llama.cpp / Ollama", "GGUF برای llama.cpp / Ollama",
     "GGUF עבור llama.cpp / Ollama"),
    # Preference tuning
    ("Objective: supervised, from preferences (DPO, ORPO, KTO, SimPO), or from rewards (GRPO)",
     "الهدف: إشرافي، أو من التفضيلات (DPO, ORPO, KTO, SimPO)، أو من المكافآت (GRPO)",
     "هدف: نظارت‌شده، از ترجیح‌ها (DPO, ORPO, KTO, SimPO)، یا از پاداش‌ها (GRPO)",
     "מטרה: מפוקח, מהעדפות (DPO, ORPO, KTO, SimPO), או מתגמולים (GRPO)"),
    ("Objective", "الهدف", "هدف", "מטרה"),
    ("Beta (preference strength)", "بيتا (قوة التفضيل)", "بتا (قدرت ترجیح)", "בטא (עוצמת ההעדפה)"),
    ("DPO loss", "خسارة DPO", "زیان DPO", "הפסד DPO"),
    ("Start from run (init_from)", "ابدأ من تشغيل (init_from)", "شروع از اجرا (init_from)", "התחלה מהרצה (init_from)"),
    ("Max prompt length", "أقصى طول للموجّه", "بیشینهٔ طول پرسش", "אורך הנחיה מרבי"),
    ("KTO from pairs", "KTO من الأزواج", "KTO از جفت‌ها", "KTO מזוגות"),
    ("Preference accuracy on held-out pairs", "دقة التفضيل على أزواج محجوزة", "دقت ترجیح روی جفت‌های کنارگذاشته",
     "דיוק העדפה על זוגות שהוחזקו בצד"),
    ("Pairs (prompt, chosen, rejected); empty = the 12 held-back Zorvane pairs",
     "أزواج (prompt, chosen, rejected)؛ فارغ = أزواج Zorvane الاثنا عشر المحجوزة",
     "جفت‌ها (prompt, chosen, rejected)؛ خالی = ۱۲ جفت کنارگذاشتهٔ Zorvane",
     "זוגות (prompt, chosen, rejected); ריק = 12 זוגות Zorvane שהוחזקו בצד"),
    ("Score the preference pairs", "قيّم أزواج التفضيل", "امتیازدهی جفت‌های ترجیح", "דרגו את זוגות ההעדפה"),
    ("Preference accuracy", "دقة التفضيل", "دقت ترجیح", "דיוק העדפה"),
    ("Benchmarks before and after (evaluation harness)", "المقاييس المعيارية قبل وبعد (أداة التقييم)",
     "محک‌ها پیش و پس (ابزار ارزیابی)", "מבחני ביצועים לפני ואחרי (רתמת ההערכה)"),
    ("Tasks", "المهام", "وظیفه‌ها", "משימות"),
    ("Documents per task (0 = all)", "مستندات لكل مهمة (0 = الكل)", "سند برای هر وظیفه (۰ = همه)",
     "מסמכים לכל משימה (0 = הכול)"),
    ("Score before and after", "قيّم قبل وبعد", "امتیازدهی پیش و پس", "דרגו לפני ואחרי"),
    ("Scores", "الدرجات", "امتیازها", "ציונים"),
    ("Preferences and rewards: DPO, ORPO, KTO, SimPO, GRPO (the studio's own rows)",
     "التفضيلات والمكافآت: DPO, ORPO, KTO, SimPO, GRPO (صفوف الاستوديو نفسه)",
     "ترجیح‌ها و پاداش‌ها: DPO, ORPO, KTO, SimPO, GRPO (ردیف‌های خود استودیو)",
     "העדפות ותגמולים: DPO, ORPO, KTO, SimPO, GRPO (השורות של הסטודיו עצמו)"),
    # GRPO
    ("GRPO: learn from rewards a program checks (objective grpo)",
     "GRPO: التعلّم من مكافآت يتحقق منها برنامج (objective grpo)",
     "GRPO: یادگیری از پاداش‌هایی که برنامه بررسی می‌کند (objective grpo)",
     "GRPO: למידה מתגמולים שתוכנה בודקת (objective grpo)"),
    ("Completions per prompt", "إكمالات لكل موجّه", "پاسخ برای هر پرسش", "השלמות לכל הנחיה"),
    ("Max completion length", "أقصى طول للإكمال", "بیشینهٔ طول پاسخ", "אורך השלמה מרבי"),
    ("Temperature", "درجة الحرارة", "دما", "טמפרטורה"),
    ("GRPO loss", "خسارة GRPO", "زیان GRPO", "הפסד GRPO"),
    ("Show samples every N steps", "اعرض عينات كل N خطوة", "نمایش نمونه‌ها هر N گام", "הצג דגימות כל N צעדים"),
    ("Start the rewards from", "ابدأ المكافآت من", "شروع پاداش‌ها از", "התחל את התגמולים מ"),
    ("Rewards (YAML)", "المكافآت (YAML)", "پاداش‌ها (YAML)", "תגמולים (YAML)"),
    ("Sampled completions and their rewards (newest first)", "إكمالات مأخوذة ومكافآتها (الأحدث أولاً)",
     "پاسخ‌های نمونه و پاداش‌هایشان (تازه‌ترین نخست)", "השלמות שנדגמו והתגמולים שלהן (החדשות ראשונות)"),
    ("Reward on held-out prompts (GRPO)", "المكافأة على موجّهات محجوزة (GRPO)",
     "پاداش روی پرسش‌های کنارگذاشته (GRPO)", "תגמול על הנחיות שהוחזקו בצד (GRPO)"),
    ("Prompts (prompt, answer); empty = the 16 held-back sums",
     "موجّهات (prompt, answer)؛ فارغ = المجاميع الستة عشر المحجوزة",
     "پرسش‌ها (prompt, answer)؛ خالی = ۱۶ جمع کنارگذاشته",
     "הנחיות (prompt, answer); ריק = 16 הסכומים שהוחזקו בצד"),
    ("Score the rewards before and after", "قيّم المكافآت قبل وبعد", "امتیازدهی پاداش‌ها پیش و پس",
     "דרגו את התגמולים לפני ואחרי"),
    ("Reward", "المكافأة", "پاداش", "תגמול"),
    ("Preference scenarios", "سيناريوهات التفضيل", "سناریوهای ترجیح", "תרחישי העדפה"),
    # Chat
    ("Use the chat examples saved from the Chat tab", "استخدم أمثلة المحادثة المحفوظة من تبويب المحادثة",
     "نمونه‌های گفتگوی ذخیره‌شده از زبانهٔ گفتگو را به کار ببر", "השתמשו בדוגמאות הצ'אט ששמרתם בלשונית הצ'אט"),
    ("Chat with", "الدردشة مع", "گفتگو با", "שוחחו עם"),
    ("Adapter on", "المهايئ مفعّل", "آداپتور روشن", "המתאם פעיל"),
    ("Retrieval from", "الاسترجاع من", "بازیابی از", "אחזור מתוך"),
    ("System prompt", "موجّه النظام", "پیام سیستم", "הנחיית מערכת"),
    ("Temperature (0: greedy)", "درجة الحرارة (0: جشع)", "دما (۰: حریصانه)", "טמפרטורה (0: חמדני)"),
    ("Top-p", "Top-p", "Top-p", "Top-p"),
    ("Max tokens", "أقصى عدد من الرموز", "بیشینهٔ توکن‌ها", "מספר אסימונים מרבי"),
    ("Chat", "المحادثة", "گفتگو", "צ'אט"),
    ("Message", "الرسالة", "پیام", "הודעה"),
    ("Send", "أرسل", "ارسال", "שליחה"),
    ("Clear chat", "امسح المحادثة", "پاک کردن گفتگو", "ניקוי הצ'אט"),
    ("Save this exchange as a training example", "احفظ هذا التبادل مثالًا للتدريب", "ذخیرهٔ این گفتگو به‌عنوان نمونهٔ آموزشی",
     "שמרו את השיחה הזו כדוגמת אימון"),
]
_BY_ENGLISH = {row[0]: dict(zip(CODES, row)) for row in TABLE}


def translate(text: str, lang: str) -> str:
    """`text` (English, as the page is built) in `lang`; English when the table has no row for it."""
    return _BY_ENGLISH.get(text, {}).get(lang, text)


def translatable(blocks) -> list[tuple[object, str, str]]:
    """(component, property, English text) for every label on the page that the table covers."""
    found = []
    for block in blocks:
        props = ["label", "title"] + (["value"] if isinstance(block, (gr.Button, gr.Markdown)) else [])
        for prop in props:
            text = getattr(block, prop, None)
            if isinstance(text, str) and text in _BY_ENGLISH:
                found.append((block, prop, text))
    return found


def relabel(found: list[tuple[object, str, str]], lang: str) -> list:
    """One update per found component that puts its labels in `lang` (several properties of one block merged)."""
    merged: dict[int, dict] = {}
    for block, prop, text in found:
        merged.setdefault(id(block), {})[prop] = translate(text, lang)
    return [gr.update(**props) for props in merged.values()]


def components(found: list[tuple[object, str, str]]) -> list:
    """The components `relabel` updates, in the same order."""
    seen: dict[int, object] = {}
    for block, _, _ in found:
        seen.setdefault(id(block), block)
    return list(seen.values())


def missing(blocks) -> list[str]:
    """Labels, buttons and tab names on the page that have no row in the table (for the test and `python -m`)."""
    out = []
    for block in blocks:
        # gr.api adds an invisible Api component for its endpoint; it shows nothing.
        if isinstance(block, (gr.State, gr.Timer, gr.components.api_component.Api)) or \
                getattr(block, "visible", True) is False:
            continue
        text = getattr(block, "label", None)
        if isinstance(block, gr.Button):
            text = block.value
        if isinstance(text, str) and text and text not in _BY_ENGLISH and text not in out:
            out.append(text)
    return out
