"""The offline question writer: questions from the sentences of a chunk, by rules, with no model.

A small model asked to write questions about a passage writes "What's that?" (issue 27: SmolLM2-135M did),
so the offline default does not ask one. It reads each sentence of a chunk as subject, verb group and the
rest, and asks what the sentence answers, in the forms people ask factual questions in:

    The Tilly T2 costs 1,290 euros.                     How much does the Tilly T2 cost?
    The company was founded in 2019 by Aiko Brandt ...  When was the company founded? / Who was ... by?
    The headquarters ... are at Harbour Street 12.       Where are the headquarters ...?
    The battery does not charge below 4 degrees C.      Below what temperature does the battery not charge?
    Replace the blades every 400 hours of mowing.       How often should I replace the blades?
    To pair the robot with the app, hold the ...        How do I pair the robot with the app?
    E31: the boundary wire signal is lost.              What does E31 mean?

Each `Fact` keeps the sentence as its answer and evidence (a sentence that says "It" borrows the subject of
the sentence before, which then joins the quote), the short span the question asks for (so a question that
gives its answer away can be caught), and several phrasings of its question. A sentence no rule reads is
left alone: the writer would rather ask nothing than ask badly. English only; the teacher route
(rag/generate.py) covers other languages and looser text.

    python -m rag.rules FILE_OR_FOLDER       # prints each chunk's facts and questions
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

AUX = {"is", "are", "was", "were"}
MODALS = {"can", "must", "should", "will", "may", "could", "would"}
DO = {"does", "do", "did"}
HAVE = {"has", "have"}
VERB_GROUP = AUX | MODALS | DO | HAVE
DETS = {"the", "a", "an", "its", "their", "your", "every", "each", "one", "this", "that", "these", "those", "all",
        "any", "some", "our", "his", "her", "my", "no", "two", "three", "four", "five"}
PREPS = {"at", "in", "on", "under", "over", "through", "via", "by", "with", "for", "after", "before", "below",
         "above", "between", "from", "to", "into", "within", "of", "about", "around", "during", "without"}
ADVERBS = {"only", "also", "always", "usually", "often", "still", "just", "now", "already", "then"}
PRONOUNS = {"it", "they", "this", "these", "he", "she"}
OPENERS = ("in that case ", "in this case ", "otherwise, ", "then ", "also, ", "however, ", "for example, ",
           "in addition, ", "as a result, ")
IRREGULAR = {"made", "sold", "done", "set", "held", "built", "sent", "kept", "given", "taken", "shown", "known",
             "written", "seen", "found", "put", "cut", "run", "paid", "bought", "told", "left", "brought", "chosen",
             "worn", "driven", "grown", "thrown", "drawn", "spent", "lost", "won", "read", "said", "meant"}
QUANTITIES = {"kg": "weight", "g": "weight", "grams": "weight", "kilograms": "weight", "tonnes": "weight",
              "cm": "length", "mm": "length", "millimetres": "length", "millimeters": "length", "m": "length",
              "metres": "length", "meters": "length", "km": "distance", "kilometres": "distance",
              "euros": "price", "euro": "price", "dollars": "price", "€": "price", "$": "price",
              "degrees": "temperature", "°c": "temperature", "percent": "percentage", "%": "percentage",
              "decibels": "noise level", "db": "noise level", "mah": "capacity", "ghz": "frequency",
              "volts": "voltage", "watts": "power", "w": "power", "hours": "time", "minutes": "time",
              "seconds": "time", "days": "time", "weeks": "time", "months": "time", "years": "time"}
TIME_UNITS = {"hours", "hour", "minutes", "minute", "seconds", "second", "days", "day", "weeks", "week",
              "months", "month", "years", "year"}
WHEN_WORDS = re.compile(r"\b(1[0-9]\d\d|20\d\d|january|february|march|april|may|june|july|august|september|"
                        r"october|november|december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
                        r"daily|weekly|monthly|every (?:day|week|month|year))\b", re.I)
MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"}
# base forms of verbs that often follow a plural subject ("Search results load ...", "Guided tours leave ..."):
# the word before them is that subject's noun, not a verb
COMMON_VERBS = {"include", "load", "go", "run", "open", "close", "need", "take", "make", "have", "use", "work", "cost",
                "show", "follow", "start", "stop", "pause", "appear", "come", "leave", "last", "get", "give", "keep",
                "receive", "pay", "apply", "allow", "require", "contain", "arrive", "depart", "remain", "stay"}
NUMBER = re.compile(r"^[+-]?\d[\d,.]*%?$")
NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"}


@dataclass
class Fact:
    """One thing a sentence says, asked in several phrasings; `answer` is the sentence(s) it is read from."""
    questions: list[str]
    answer: str
    quote: str          # verbatim text of the chunk
    start: int          # the quote's span in the chunk text
    end: int
    key: str            # the part of the answer the question asks for
    rule: str


@dataclass
class Sentence:
    text: str
    start: int
    end: int
    words: list[str] = field(default_factory=list)


def sentences(text: str) -> list[Sentence]:
    """The sentences of a chunk with their spans; a list item or a line is a sentence of its own."""
    out = []
    for line in re.finditer(r"[^\n]+", text):
        body = line.group()
        marker = re.match(r"\s*(?:[-*•]|\d+(?:\.\d+)*[.)]?|\([a-z0-9]{1,3}\))\s+(?=\S)", body)
        offset = line.start() + (marker.end() if marker else 0)
        body = body[marker.end():] if marker else body
        if body.lstrip().startswith(("#", "|")):  # headings, and table rows (two-column ones are properties)
            continue
        for m in re.finditer(r"\S.*?(?:[.!?](?=\s+[\"'A-Z0-9(]|\s*$)|$)", body):
            s = m.group().strip()
            if len(s.split()) >= 3:
                out.append(Sentence(s, offset + m.start(), offset + m.start() + len(s), s.rstrip(".!?").split()))
    return out


def _bare(word: str) -> str:
    return word.strip(".,;:!?\"'()").lower()


def _lemma(verb: str) -> str:
    """The base form of a present-tense third-person verb: weighs -> weigh, carries -> carry, does -> do."""
    v = verb.lower()
    if v in ("has", "is", "does", "goes"):
        return {"has": "have", "is": "be", "does": "do", "goes": "go"}[v]
    if v.endswith("ies") and len(v) > 4:
        return v[:-3] + "y"
    if re.search(r"(ss|sh|ch|x|z|o)es$", v):
        return v[:-2]
    return v[:-1] if v.endswith("s") else v


def _participle(word: str) -> bool:
    w = _bare(word)
    return w in IRREGULAR or (len(w) > 4 and w.endswith("ed"))


def _present_verb(words: list[str], i: int) -> bool:
    """Whether words[i] reads as the finite verb of a present-tense sentence ("weighs", "connects")."""
    raw, w = words[i], _bare(words[i])
    if i == 0 or raw[:1].isupper() or not w.endswith("s") or len(w) < 4 or re.search(r"(ss|us|is|'s)$", w):
        return False
    before, after = _bare(words[i - 1]), _bare(words[i + 1]) if i + 1 < len(words) else ""
    if before in DETS or before in PREPS or NUMBER.match(before) or before in NUMBER_WORDS:
        return False
    j = i + 1
    while j < len(words) and _bare(words[j]) in ADVERBS:  # "files now include": look past the adverb
        j += 1
    following = _bare(words[j]) if j < len(words) else ""
    if following in COMMON_VERBS or (j > i + 1 and following in VERB_GROUP):  # a plural noun before its verb
        return False
    return after not in VERB_GROUP and after not in ("and", "or", "of")


def _np(words: list[str]) -> list[str]:
    """The noun phrase a run of words starts with: up to a preposition, comma, relative word or conjunction."""
    out = []
    for w in words:
        b = _bare(w)
        if out and (b in PREPS or b in ("that", "which", "who", "and", "or", "until", "while", "if", "every", "once")):
            break
        out.append(w.strip(".,;:!?"))
        if w.endswith((",", ";", ":")):
            break
    return out


PRICED = re.compile(r"[£$€]|\b(?:free|euros?|dollars?|pounds?|pence|\d+p)\b", re.I)


def _property_questions(key: str, value: str, subject: str, heading: str) -> list[str]:
    """The questions a "key: value" property answers, in the forms people ask them."""
    name = key[:1].lower() + key[1:] if not key[1:2].isupper() else key
    of = f" of {subject}" if subject else ""
    word = _bare(name.split()[-1])
    if _participle(name.split()[0]) and len(name.split()) == 1:  # "Built: 1998, at the Appledore yard"
        it = subject or "it"
        asks = [f"When was {it} {name}?"] if re.search(r"\b1[5-9]\d\d\b|\b20\d\d\b", value) else []
        return asks + [f"Where was {it} {name}?", f"How was {it} {name}?"]
    if PRICED.search(value) and (re.search(r"fare|price|ticket|fee|rate|cost|charge", heading, re.I)
                                 or re.search(r"[£$€]", value)):
        a = "an" if name[:1].lower() in "aeiou" else "a"
        return [f"What does {a} {name} cost{' at ' + subject if subject else ''}?", f"How much is {a} {name}?"]
    if word.endswith("s") and not word.endswith("ss") and re.match(r"(?:up to |about |over |under )?\d", value):
        return [f"How many {name} does {subject or 'it'} have?", f"What is the number of {name}{of}?"]
    verb = "are" if word.endswith("s") and not word.endswith("ss") else "is"
    return [f"What {verb} the {name}{of}?", f"What {verb} the {name}?" if subject else f"Tell me the {name}."]


def _topic(heading: str) -> str:
    """What a section's heading is about, to ask its properties of: "About the MV Corran" -> "the MV Corran";
    "" where the heading names no thing (Fares, Specifications, Tickets: plural or generic section names)."""
    topic = re.sub(r"^(?:about|all about|more about|meet|introducing)\s+", "", heading.strip(), flags=re.I)
    topic = re.split(r"\s*[:|–—-]\s+", topic)[0].strip()
    words = topic.split()
    if not words or len(words) > 6 or words[-1].lower().endswith("s") and not words[0][:1].isupper():
        return ""
    if words[0].lower() in ("the", "a", "an", "our", "your"):
        return topic[:1].lower() + topic[1:]
    return topic if any(w[:1].isupper() for w in words[1:]) or words[0].isupper() else ""


class Reader:
    """Reads the sentences of one collection; `proper` words keep their capital at a question's start."""

    def __init__(self, texts: list[str]):
        self.proper = {w for t in texts for w in re.findall(r"(?<=[a-z,;] )([A-Z][\w-]+)", t)}

    def subject(self, words: list[str]) -> str:
        words = list(words)
        while len(words) > 1 and _bare(words[-1]) in ADVERBS:
            words.pop()
        first = words[0]
        if _bare(first) in DETS or (first not in self.proper and not (len(words) > 1 and words[1][:1].isupper())
                                    and not first.isupper()):
            first = first[:1].lower() + first[1:]
        return " ".join([first] + words[1:]).strip(",")

    def facts(self, text: str) -> list[Fact]:
        """The facts of a chunk's text, each with its questions: a question the text asks itself (an FAQ) with
        its answer, a property (a "Key: value" line, a two-column table row) asked as one, then each sentence."""
        out: list[Fact] = self.asked(text) + self.properties(text)
        taken = [(f.start, f.end) for f in out]
        taken += [(m.start(), m.end()) for m in re.finditer(r"^[^\n]*\?[*_]*\s*$", text, re.M)]  # questions ask nothing
        last_subject: tuple[str, int] | None = None  # (subject, start of its sentence)
        for s in sentences(text):
            words = list(s.words)
            lowered = s.text.lower()
            for opener in OPENERS:
                if lowered.startswith(opener):
                    words = words[len(opener.split()):]
                    words[0] = words[0][:1].upper() + words[0][1:]
                    break
            if len(words) < 3:
                continue
            start, answer = s.start, s.text
            pronoun = _bare(words[0]) in PRONOUNS and (_bare(words[0]) not in ("this", "these")
                                                        or _bare(words[1]) in VERB_GROUP)  # not "These terms ..."
            if pronoun and words[0][0].isupper() and not last_subject:
                continue  # "They were updated": nothing says who they are, so no question can say it
            if pronoun and words[0][0].isupper() and last_subject:
                subject_words = last_subject[0].split()
                answer = last_subject[0][:1].upper() + last_subject[0][1:] + " " + " ".join(s.text.split()[1:])
                start = last_subject[1]
                words = subject_words + words[1:]
            found = self._read(words)
            if not pronoun:  # a pronoun reaches back one sentence only, to a subject that sentence had
                last_subject = (found["subject"], s.start) if found.get("subject") else None
            if any(s.start < b and a < s.end for a, b in taken):  # already read as an answer or a property
                continue
            asks = found.get("asks") or self._about(words)
            for questions, key, rule in asks:
                quote = text[start:s.end]
                out.append(Fact([q[:1].upper() + q[1:] for q in questions], answer, quote, start, s.end,
                                key.strip(" ,;:"), rule))
        return out

    def _about(self, words: list[str]) -> list:
        """A sentence no rule reads still states a fact about what it opens with: asked about that ("The
        minimum supported Android version is now Android 10." -> What do you know about the minimum supported
        Android version?). Only a noun phrase of two words or more that the sentence goes on after."""
        if len(words) < 5 or _bare(words[0]) in PRONOUNS | PREPS | {"if", "when", "you", "we", "i", "there", "here",
                                                                     "as", "so", "but", "and", "or", "yes", "no"}:
            return []
        head = _np(words)
        cut = next((i for i, w in enumerate(head) if i and (_bare(w) in VERB_GROUP | COMMON_VERBS
                                                            or _present_verb(head, i)
                                                            or (_participle(w) and w[:1].islower()  # "School opened"
                                                                and _bare(head[i - 1]) not in DETS))), None)
        head = head[:cut] if cut else head
        while head and _bare(head[-1]) in ADVERBS:
            head = head[:-1]
        if not (2 <= len(head) <= 8) or len(head) >= len(words) - 1 or _bare(head[-1]) in DETS:
            return []
        np = self.subject(head)
        key = " ".join(words[len(head):])
        return [([f"What do you know about {np}?", f"Tell me about {np}."], key, "about")]

    def asked(self, text: str) -> list[Fact]:
        """An FAQ: a line that is a question (plain, **bold**, a heading, or after "Q:"), answered by the lines
        after it up to a blank line or the next question; its answer is the first sentence of those."""
        out = []
        lines = list(re.finditer(r"[^\n]+", text))
        for i, line in enumerate(lines):
            question = re.sub(r"^\s*(?:#+\s*|Q:\s*|\*\*|__)|(?:\*\*|__)\s*$", "", line.group()).strip()
            question = question.strip("*_ ").strip()
            if not question.endswith("?") or len(question.split()) < 3 or i + 1 >= len(lines):
                continue
            nxt = lines[i + 1]
            if text[line.end():nxt.start()].count("\n") > 2 or nxt.group().rstrip().endswith("?"):
                continue
            body = re.sub(r"^\s*(?:A:\s*)", "", nxt.group())
            offset = nxt.start() + (len(nxt.group()) - len(body))
            first = re.match(r"\S.*?(?:[.!?](?=\s+[\"'A-Z0-9(]|\s*$)|$)", body)
            if not first or len(first.group().split()) < 2:
                continue
            answer = first.group().strip()
            start = offset + first.start()
            out.append(Fact([question[:1].upper() + question[1:]], answer, text[start:start + len(answer)], start,
                            start + len(answer), answer.rstrip("."), "faq"))
        return out

    def properties(self, text: str) -> list[Fact]:
        """Properties: "Key: value" lines and list items whose key is a plain word or two ("Length: 24
        metres", "Adult return: £14.50"), and the rows of a two-column table under its header, asked as "What
        is the <key> of <the section's subject>?". Code-like keys (E31, codes in capitals) stay terms, read
        with the sentences ("What does E31 mean?")."""
        out = []
        heading = title = ""
        header_seen = False
        for line in re.finditer(r"[^\n]+", text):
            body = line.group()
            if body.lstrip().startswith("#"):
                heading, header_seen = body.lstrip("# ").strip(), False
                title = title or _topic(heading)  # the document's title: whose properties, where a section says not
                continue
            cells = [c.strip() for c in body.strip().strip("|").split("|")] if body.strip().startswith("|") else None
            if cells is not None:
                if len(cells) != 2 or all(re.fullmatch(r":?-{2,}:?", c) for c in cells):
                    continue
                if not header_seen:  # the header row names the columns, it is no property
                    header_seen = True
                    continue
                key, value = cells
                start = line.start() + body.index(value)
            else:
                marker = re.match(r"\s*(?:[-*•]\s+)?", body)
                m = re.match(r"([A-Za-z][A-Za-z'-]*(?: [a-z][A-Za-z'-]*){0,3})( \([^)]{1,40}\))?:\s+(\S.{0,200})$",
                             body[marker.end():])
                if not m or m.group(1).lower() in ("note", "tip", "warning", "important"):
                    continue
                key, value = m.group(1), m.group(3).strip()  # a parenthetical stays in the answer, not the question
                start = line.start() + marker.end() + m.start(3)
            if not key or not value or re.fullmatch(r"\S*\d\S*", key) or key.isupper():  # E31, A4: codes, terms
                continue
            asks = _property_questions(key, value, _topic(heading) or title, heading)
            answer = body[len(body) - len(body.lstrip(" -*•")):].strip() if cells is None else f"{key}: {value}"
            quote = text[line.start() + (len(body) - len(body.lstrip(" -*•|"))):start + len(value)]
            out.append(Fact(asks, answer, quote, start - len(quote) + len(value), start + len(value), value.rstrip("."),
                            "property"))
        return out

    def _read(self, words: list[str]) -> dict:
        text = " ".join(words)
        term = re.match(r"^([\w-]+(?: [\w-]+){0,3}):\s+(.{8,})$", text)
        if term and not term.group(1).lower().startswith(("note", "tip", "warning")):
            t = term.group(1)
            return {"asks": [([f"What does {t} mean?", f"What is {t}?", f"I see {t}. What does it mean?"],
                              term.group(2), "term")]}
        if _bare(words[0]) == "to" and "," in text:
            purpose, _, rest = text[3:].partition(",")
            if rest.strip():
                p = purpose.strip()
                return {"asks": [([f"How do I {p}?", f"What should I do to {p}?", f"How can I {p}?"], rest.strip(),
                                  "purpose")]}
        if _bare(words[0]) == "if" and "," in text:
            cond, _, rest = text[3:].partition(",")
            c = cond.strip().replace("your ", "my ")
            return {"asks": [([f"What should I do if {c}?", f"What happens if {c}?"], rest.strip(), "condition")]}
        if _bare(words[0]) == "never" and len(words) > 2:
            obj = " ".join(_np(words[2:]))
            return {"asks": [([f"Can I {_bare(words[1])} {obj}?", f"Should I {_bare(words[1])} {obj}?"],
                              " ".join(words[:2]), "never")]}
        if self._imperative(words):
            return {"asks": self._imperative_asks(words)}
        apposed = self._apposition(words)
        if apposed:
            return apposed
        for i in range(1, min(len(words) - 1, 10)):
            w = _bare(words[i])
            if words[i - 1].endswith(","):
                return {}
            if w in VERB_GROUP or _present_verb(words, i):
                subject = self.subject(words[:i])
                if _bare(words[0]) in ("you", "we", "i", "there", "here"):
                    return {}
                return {"subject": subject, "asks": self._clause(subject, words[i:])}
        return {}

    def _apposition(self, words: list[str]) -> dict:
        """ "The Great Clock, made by Jonas Fairweather in 1762, shows the tides": the participle between commas
        is a passive sentence of the subject (Who made ...? When was ... made?), and the rest a sentence of it."""
        first = next((i for i, w in enumerate(words[:8]) if w.endswith(",")), None)
        if first is None or first + 2 >= len(words) or not _participle(words[first + 1]) or \
                _bare(words[0]) in PRONOUNS | {"if", "when", "to", "you", "we", "i", "there"}:
            return {}
        second = next((j for j in range(first + 2, len(words)) if words[j].endswith(",")), None)
        if second is None or second + 2 >= len(words):
            return {}
        subject = self.subject(words[:first + 1])
        aux = "were" if _bare(words[first]).endswith("s") and not _bare(words[first]).endswith("ss") else "was"
        part = _bare(words[first + 1])
        between = [w.strip(",") for w in words[first + 2:second + 1]]
        asks = self._passive(subject, aux, part, between)
        main = words[second + 1:]
        if main and (_bare(main[0]) in VERB_GROUP or _present_verb(["it"] + main, 1)):
            asks += self._clause(subject, main)
        return {"subject": subject, "asks": asks} if asks else {}

    def _imperative(self, words: list[str]) -> bool:
        first, second = _bare(words[0]), _bare(words[1])
        return (first not in DETS and first not in PRONOUNS and first not in PREPS and not first.endswith("s")
                and words[0] not in self.proper and second in {"the", "a", "an", "your", "it", "them", "all", "this"})

    def _imperative_asks(self, words: list[str]) -> list:
        verb = _bare(words[0])
        obj = " ".join(_np(words[1:]))
        rest = " ".join(words[1 + len(_np(words[1:])):])
        asks = []
        how_often = re.search(r"\b(every \S+(?: \S+)?(?: of \w+)?|once (?:a|an|every) \w+|\w+ times a \w+|daily|"
                              r"weekly|monthly)", rest)
        if how_often:
            asks.append(([f"How often should I {verb} {obj}?", f"When should I {verb} {obj}?"], how_often.group(),
                         "how often"))
        purpose = re.search(r"\bto (\w+ .+)$", rest)
        if purpose and purpose.group(1).split()[0] not in DETS | PREPS | NUMBER_WORDS:
            p = purpose.group(1)
            asks.append(([f"How do I {p}?", f"What do I need to do to {p}?"], f"{verb} {obj}", "purpose"))
        if not asks and len(rest.split()) >= 2 and _bare(words[1]) not in PRONOUNS | {"them"}:
            asks.append(([f"How should I {verb} {obj}?", f"What is the right way to {verb} {obj}?"], rest,
                         "instruction"))
        return asks

    def _clause(self, subject: str, rest: list[str]) -> list:
        verb, after = _bare(rest[0]), rest[1:]
        if not after:
            return []
        nxt = _bare(after[0])
        negated = nxt == "not"
        if negated:
            after = after[1:]
            if not after:
                return []
            nxt = _bare(after[0])
        if verb in AUX:
            return self._copula(subject, verb, after, negated)
        if verb in MODALS and nxt == "be" and len(after) > 1 and _participle(after[1]):
            return self._modal_passive(subject, verb, after[1:])
        if verb in MODALS and not negated and len(after) > 1 and nxt.isalpha() and nxt not in VERB_GROUP | DETS \
                and nxt not in PREPS and not after[0][:1].isupper():
            return self._modal_active(subject, verb, nxt, after[1:])
        if verb in HAVE and nxt in ("a", "an") and not negated:
            head = _np(after[1:])
            if head:
                noun = head[-1]
                return [([f"What {noun} does {subject} have?", f"What kind of {noun} does {subject} have?",
                          f"Does {subject} have a {noun}, and what is it?"], " ".join(head), "has")]
        if verb in DO and negated:
            return self._present(subject, nxt, after[1:], negated=True)
        if verb not in VERB_GROUP:
            asks = self._present(subject, _lemma(verb), after, negated=False, surface=verb)
            for j in range(1, len(after) - 1):  # "... and costs 24 euros": a second verb of the same subject
                if _bare(after[j]) == "and" and _present_verb(after, j + 1):
                    asks += self._present(subject, _lemma(_bare(after[j + 1])), after[j + 2:], negated=False,
                                          surface=_bare(after[j + 1]))
                    break
            return asks
        return []

    def _modal_active(self, subject: str, modal: str, verb: str, rest: list[str]) -> list:
        """ "A member may cancel with a month's notice": How may a member cancel? "Members may bring up to two
        guests": How many guests may members bring? "Members must hold their own insurance": What must ...?"""
        first = _bare(rest[0])
        key = " ".join(rest)
        if first in ("when", "if", "while", "until", "once", "whenever"):
            return [([f"When {modal} {subject} {verb}?", f"In what case {modal} {subject} {verb}?"], key, "modal when")]
        if first in PREPS:
            return [([f"How {modal} {subject} {verb}?", f"In what way {modal} {subject} {verb}?"], key, "modal how")]
        count = re.match(r"(?:up to |at most |at least |no more than )?(\d+|one|two|three|four|five|six|seven|eight|"
                         r"nine|ten|twelve) ([a-z][\w-]*)", key.lower())
        if count:
            return [([f"How many {count.group(2)} {modal} {subject} {verb}?",
                      f"What number of {count.group(2)} {modal} {subject} {verb}?"], key, "modal how many")]
        head = _np(rest)
        if head:
            return [([f"What {modal} {subject} {verb}?", f"What is it that {subject} {modal} {verb}?"], key,
                     "modal what")]
        return []

    def _copula(self, subject: str, aux: str, after: list[str], negated: bool) -> list:
        nxt = _bare(after[0])
        tail = " ".join(after)
        if negated:
            return []
        if _participle(after[0]):
            return self._passive(subject, aux, _bare(after[0]), after[1:])
        if nxt in ADVERBS | {"last", "first", "recently", "originally"} and len(after) > 1 and _participle(after[1]):
            return self._passive(subject, aux, _bare(after[1]), after[2:])  # "were last updated on 3 March"
        if nxt == "for" and len(after) > 1:
            return [([f"What {aux} {subject} for?", f"What {aux} {subject} meant for?"], tail, "for")]
        if nxt == "open":
            return [([f"When {aux} {subject} open?", f"What are the opening hours of {subject}?"], tail, "open")]
        if nxt in ("at", "in", "on", "under", "near", "inside", "behind"):
            return [([f"Where {aux} {subject}?", f"Where can I find {subject}?"], tail, "where")]
        if nxt in ("a", "an", "the") or after[0][:1] in "\"'“" or after[0][:1].isupper() or NUMBER.match(nxt):
            plural = aux in ("are", "were")
            return [([f"What {aux} {subject}?", f"Can you tell me what {subject} {aux}?",
                      f"What do you know about {subject}?" if plural else f"Tell me what {subject} {aux}."],
                     tail, "what is")]
        return []

    def _passive(self, subject: str, aux: str, part: str, rest: list[str]) -> list:
        tail = " ".join(rest)
        asks = []
        when = WHEN_WORDS.search(tail)
        if when:
            w = when.group().lower()
            other = ("In which year" if w.isdigit() else "On which day" if w.endswith("day") else
                     "In which month" if w in MONTHS else "How often")
            asks.append(([f"When {aux} {subject} {part}?", f"{other} {aux} {subject} {part}?"], when.group(), "when"))
        by = re.search(r"\bby ([A-Z][\w-]+(?: [A-Z][\w-]+| and [A-Z][\w-]+)*)", tail)
        if by:
            asks.append(([f"Who {aux} {subject} {part} by?", f"By whom {aux} {subject} {part}?"], by.group(1), "who"))
        where = re.search(r"\b(?:at|in) (?:the )?(?:[a-z]+ )*?(?:of )?([A-Z][\w-]+(?: [A-Z0-9][\w-]*)*)", tail)
        if where and not WHEN_WORDS.fullmatch(where.group(1)) and (not by or where.group(1) not in by.group(1)):
            asks.append(([f"Where {aux} {subject} {part}?", f"In which place {aux} {subject} {part}?"],
                         where.group(1), "where"))
        if part == "made" and rest and _bare(rest[0]) == "of":
            asks.append(([f"What {aux} {subject} made of?", f"What material {aux} {subject} made of?"], tail,
                          "made of"))
        within = re.match(r"within (\S+ [\w-]+(?: \w+)?)", tail)
        if within:
            asks.append(([f"How soon {aux} {subject} {part}?", f"How quickly {aux} {subject} {part}?"],
                         within.group(1), "how soon"))
        if not asks and rest and _bare(rest[0]) in ("in", "as", "with", "through", "via", "by"):
            asks.append(([f"How {aux} {subject} {part}?", f"In what way {aux} {subject} {part}?"], tail, "how"))
        return asks

    def _modal_passive(self, subject: str, modal: str, rest: list[str]) -> list:
        part = _bare(rest[0])
        particle = _bare(rest[1]) if len(rest) > 1 and _bare(rest[1]) in ("back", "up", "off", "out", "down") else ""
        verb = f"{part} {particle}".strip()
        tail = " ".join(rest[2 if particle else 1:])
        within = re.match(r"within (\S+) ([\w-]+)", tail)
        if within:
            return [([f"Within how many {within.group(2)} {modal} {subject} be {verb}?",
                      f"How long do I have until {subject} can no longer be {verb}?"],
                     f"{within.group(1)} {within.group(2)}", "within")]
        between = re.match(r"(?:to |at )?(?:between|from) (\S+) (?:and|to) (\S+ \w+)", tail)
        if between:
            return [([f"Between which values {modal} {subject} be {verb}?", f"What range {modal} {subject} be {verb} in?"],
                     between.group(), "range")]
        if tail:
            return [([f"How {modal} {subject} be {verb}?", f"In what way {modal} {subject} be {verb}?"], tail, "how")]
        return []

    def _present(self, subject: str, lemma: str, after: list[str], negated: bool, surface: str = "") -> list:
        if not after:
            return []
        nxt, tail = _bare(after[0]), " ".join(after)
        not_ = " not" if negated else ""
        if nxt == "you" and lemma in ("let", "help", "allow", "ask", "tell"):
            return [([f"What does {subject} {lemma} you do?", f"What can I do with {subject}?"], tail, "lets you")]
        quantity = re.match(r"(?:(about|around|up to|over|under|nearly|almost|roughly) )?([+-]?\d[\d,.]*%?) (\S+)",
                            tail)
        if quantity and not negated:
            unit = _bare(quantity.group(3))
            if lemma == "weigh":
                return [([f"How much does {subject} weigh?", f"What is the weight of {subject}?",
                          f"How heavy is {subject}?"], quantity.group(), "how much")]
            if lemma == "cost":
                return [([f"How much does {subject} cost?", f"What is the price of {subject}?",
                          f"What does {subject} cost?"], quantity.group(), "how much")]
            if lemma == "measure":
                return [([f"How big is {subject}?", f"What are the dimensions of {subject}?",
                          f"What does {subject} measure?"], quantity.group(), "how big")]
            if unit in TIME_UNITS:
                return [([f"How long does {subject} {lemma}?", f"How much time does {subject} {lemma}?"],
                         quantity.group(), "how long")]
            things = " ".join(_np(after[1 + (len(quantity.group(1).split()) if quantity.group(1) else 0):]))
            if unit in QUANTITIES and things.split()[1:]:
                rest_of = " ".join(things.split()[1:])
                return [([f"What {rest_of} does {subject} {lemma}?", f"Which {rest_of} does {subject} {lemma}?"],
                         quantity.group(), "which")]
            if things:
                return [([f"How many {things} does {subject} {lemma}?", f"What number of {things} does {subject} {lemma}?"],
                         quantity.group(), "how many")]
        if nxt in PREPS:
            obj = after[1:]
            words = [_bare(w) for w in obj]
            number_at = next((j for j, w in enumerate(words) if NUMBER.match(w)), None)
            if nxt in ("at", "below", "above", "under") and number_at is not None and number_at + 1 < len(words):
                unit = words[number_at + 1]
                head = [w for w in _np(obj) if _bare(w) not in DETS]
                name = QUANTITIES.get(unit) or (" ".join(head) if head and not NUMBER.match(_bare(head[0])) else "")
                if name:
                    return [([f"{nxt.capitalize()} what {name} does {subject}{not_} {lemma}?",
                              f"What is the {name} {nxt} which {subject} "
                              + (f"does not {lemma}?" if negated else f"{surface or lemma}?")],
                             " ".join(after[1:number_at + 3]), "at what")]
            if negated:
                return []
            if nxt in ("over", "through", "via", "by"):
                return [([f"How does {subject} {lemma}?", f"By what means does {subject} {lemma}?"], tail, "how")]
            if nxt in ("in", "with", "after", "for", "on", "to") and obj:
                counted = _bare(obj[0]) in NUMBER_WORDS and len(obj) > 1
                noun = _bare(obj[1]) if counted else ""
                ask = f"What {noun} does {subject} {lemma} {nxt}?" if counted else f"What does {subject} {lemma} {nxt}?"
                return [([ask, f"Tell me what {subject} {surface or lemma} {nxt}."], " ".join(obj), "what prep")]
            return []
        if negated or nxt in ("and", "or", "that"):
            return []
        obj = _np(after)
        if not obj:
            return []
        if after[len(obj):len(obj) + 1] == ["to"] and _bare(obj[0]) in DETS:
            o = " ".join(obj)
            return [([f"How does {subject} {lemma} {o}?", f"In what way does {subject} {lemma} {o}?"], tail, "how")]
        return [([f"What does {subject} {lemma}?", f"Tell me what {subject} {surface or lemma}."], " ".join(obj),
                 "what does")]


if __name__ == "__main__":
    from rag.documents import chunk_document, load_documents

    docs, skipped = load_documents(sys.argv[1:])
    chunks = [c for d in docs for c in chunk_document(d)]
    reader = Reader([c.text for c in chunks])
    for c in chunks:
        print(f"--- {c.source} > {c.location()}")
        for f in reader.facts(c.text):
            print(f"  [{f.rule}] {' | '.join(f.questions)}\n      -> {f.answer}   (key: {f.key})")
