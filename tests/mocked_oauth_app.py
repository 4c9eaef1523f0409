"""The studio's page with Gradio's own mocked Hugging Face sign-in, for tests/test_shared_app.py: outside a Space
Gradio mounts `/login/huggingface` and `/login/callback` routes that put a mocked profile in the session, but
builds that profile by asking the Hub who the machine's token belongs to; this sets the profile's user name from
STUDIO_MOCK_HF_USER instead, so the sign-in runs offline through Gradio's real routes and session.

    STUDIO_OAUTH=1 STUDIO_MOCK_HF_USER=frank python tests/mocked_oauth_app.py
"""

import os
import sys
import time
from pathlib import Path

import gradio.oauth

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _mocked_profile() -> dict:
    name = os.environ["STUDIO_MOCK_HF_USER"]
    return {"access_token": "mock-oauth-token", "token_type": "bearer", "expires_in": 3600, "scope": "openid profile",
            "expires_at": int(time.time()) + 3600,
            "userinfo": {"sub": "1", "name": name, "preferred_username": name,
                         "profile": f"https://huggingface.co/{name}", "picture": "", "website": ""}}


gradio.oauth._get_mocked_oauth_info = _mocked_profile

if __name__ == "__main__":
    from ui.app import main

    sys.exit(main())
