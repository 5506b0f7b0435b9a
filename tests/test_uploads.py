"""Every file of the hardening corpus through the upload widget (AppTest).

A bad file gives one ``st.error`` and the page keeps working; a good but odd file gives a working
view; after each bad upload, a good one works in the same session. Nothing raises.
"""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_page
from tests.corpus import build_corpus
from ui import settings as S

CASES = build_corpus()
MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "gif": "image/gif",
}


@pytest.fixture(scope="module")
def good_png() -> bytes:
    return next(c.data for c in CASES if c.name == "rgba.png")


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    mime = MIME.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return at.file_uploader(key=S.KEY_UPLOAD).set_value((name, data, mime)).run()


@pytest.fixture(scope="module")
def app() -> AppTest:
    at = open_page("pages/2_FPN_outputs.py", size=96)
    at.radio(key=S.KEY_SOURCE).set_value(S.SOURCE_UPLOAD).run()
    assert not at.exception
    return at


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_file_through_the_upload_widget(app: AppTest, good_png: bytes, case) -> None:
    _upload(app, case.name, case.data)
    assert not app.exception, [e.value for e in app.exception]
    errors = [e.value for e in app.error]
    if case.expect == "error":
        assert len(errors) == 1 and case.name in errors[0], errors
    else:
        assert not errors, errors
        uploaded = app.session_state[S.UPLOAD_IMAGE]
        assert isinstance(uploaded, np.ndarray) and uploaded.dtype == np.uint8 and uploaded.shape[2] == 3
        if case.name == "exif_rotated.jpg":  # stored 64 wide x 32 high, displayed upright: 32 x 64
            assert uploaded.shape[:2] == (64, 32)
        assert any("p3" in m.value for m in app.markdown), "the levels are shown"
    # a good upload right after works in the same session
    _upload(app, "after.png", good_png)
    assert not app.exception and not app.error
    assert app.session_state[S.UPLOAD_NAME] == "after.png"
