"""Model zoo: official model names -> ModelSpec, weights cache directory and downloads.

Default thresholds: conf 0.1 for every model (ByteTrack's second association stage needs boxes with
scores 0.1-0.5, and ByteTrack's MOT exps/track tools use test_conf 0.1). NMS IoU per family as in
the official evaluation code: YOLOX 0.65 (``nmsthre`` of the COCO exps), ByteTrack 0.7 (its MOT exps),
YOLOv5 0.45 (``detect.py`` ``iou_thres``).
Only hashes actually known are stated; the others are None (no check).
"""
from __future__ import annotations

import hashlib
import html
import http.cookiejar
import os
import re
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

from .spec import COCO80, ModelSpec

YOLOX_RELEASE = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_{}.pth"
YOLOV5_RELEASE = "https://github.com/ultralytics/yolov5/releases/download/v7.0/yolov5{}.pt"
#: The exact yolov5n.pt in shared/data came from this commit of the YOLOv5 repository (hash known).
YOLOV5N_AT_COMMIT = "https://github.com/ultralytics/yolov5/raw/981548a1b78a10eb4fcf575997fa7392d5f74615/yolov5n.pt"
YOLOV5N_SHA256 = "4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3"
GDRIVE = "https://drive.google.com/uc?export=download&id={}"
#: Google Drive ids of ByteTrack's model zoo (README of ifzhang/ByteTrack); Drive answers large files with a
#: "can't scan this file for viruses" page, which ``download`` confirms (``gdrive_confirmation_url``).
BYTETRACK_GDRIVE_IDS = {
    "nano": "1AoN2AxzVwOLM0gJ15bcwqZUpFjlDV1dX",
    "tiny": "1LFAl14sql2Q5Y9aNFsX_OqsnIzUD_1ju",
    "s": "1uSmhXzyV1Zvb4TJJCzpsZOIcw7CCJLxj",
    "m": "11Zb0NN_Uu7JwUd9e6Nk8o2_EUfxWqsun",
    "l": "1XwfUuCBF4IgWBWK2H7oOhQgEj9Mrb3rz",
    "x": "1P4mY0Yyd3PPTybgZkjMYhFri88nTmJX5",
    "x_mot20": "1HX2_JpMOjOIj1Z9rJjoet9XNy_cCAs5U",
}
#: YOLOv5 v6.0+ default anchors (pixels), P3/8, P4/16, P5/32.
YOLOV5_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


def _yolox_spec(variant: str) -> ModelSpec:
    size = (416, 416) if variant in ("nano", "tiny") else (640, 640)
    return ModelSpec(name=f"yolox_{variant}", family="yolox", variant=variant, num_classes=80, input_size=size,
                     preprocessing="yolox", class_names=list(COCO80), conf_thresh=0.1, nms_thresh=0.65,
                     url=YOLOX_RELEASE.format(variant), extra={"filename": f"yolox_{variant}.pth"})


def _bytetrack_spec(variant: str) -> ModelSpec:
    size = (608, 1088) if variant in ("nano", "tiny", "s") else (800, 1440)
    gdrive = BYTETRACK_GDRIVE_IDS.get(variant)
    return ModelSpec(name=f"bytetrack_{variant}_mot17", family="yolox", variant=variant, num_classes=1,
                     input_size=size, preprocessing="yolox_legacy", class_names=["person"], conf_thresh=0.1,
                     nms_thresh=0.7, url=GDRIVE.format(gdrive) if gdrive else None,
                     extra={"filename": f"bytetrack_{variant}_mot17.pth.tar",
                            "alternatives": [f"bytetrack_{variant}_mot17.onnx"]})


def _yolov5_spec(variant: str) -> ModelSpec:
    known = variant == "n"
    return ModelSpec(name=f"yolov5{variant}", family="yolov5", variant=variant, num_classes=80,
                     input_size=(640, 640), preprocessing="yolov5", class_names=list(COCO80), conf_thresh=0.1,
                     nms_thresh=0.45, anchors=[list(map(float, a)) for a in YOLOV5_ANCHORS],
                     url=YOLOV5N_AT_COMMIT if known else YOLOV5_RELEASE.format(variant),
                     sha256=YOLOV5N_SHA256 if known else None, extra={"filename": f"yolov5{variant}.pt"})


ZOO: dict[str, ModelSpec] = {
    **{f"yolox_{v}": _yolox_spec(v) for v in ("nano", "tiny", "s", "m", "l", "x")},
    **{f"bytetrack_{v}_mot17": _bytetrack_spec(v) for v in ("nano", "tiny", "s", "m", "l", "x")},
    "bytetrack_x_mot20": _bytetrack_spec("x").replace(
        name="bytetrack_x_mot20", input_size=[896, 1600], url=GDRIVE.format(BYTETRACK_GDRIVE_IDS["x_mot20"]),
        extra={"filename": "bytetrack_x_mot20.pth.tar", "alternatives": ["bytetrack_x_mot20.onnx"]}),
    **{f"yolov5{v}": _yolov5_spec(v) for v in ("n", "s", "m", "l", "x")},
}


def zoo_spec(name: str) -> ModelSpec:
    """A copy of the zoo's spec for ``name``; unknown names raise a ValueError listing the known ones."""
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; zoo names: {', '.join(sorted(ZOO))} (or give a file path)")
    return ZOO[name].replace()


def cache_dir() -> Path:
    """Weights cache: ``$INT8TRACK_HOME`` or ``~/.cache/int8track``."""
    return Path(os.environ.get("INT8TRACK_HOME", Path.home() / ".cache" / "int8track")).expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def zoo_weights(spec: ModelSpec) -> Path:
    """Path of the spec's weights in the cache, downloading them when absent and possible."""
    folder = cache_dir()
    for filename in [spec.extra["filename"], *spec.extra.get("alternatives", [])]:
        if (folder / filename).is_file():
            return folder / filename
    target = folder / spec.extra["filename"]
    if spec.url is None:
        raise FileNotFoundError(f"{spec.name}: no download URL known; place the official weights at {target}")
    try:
        download(spec.url, target, spec.sha256)
    except OSError as exc:
        raise FileNotFoundError(
            f"{spec.name}: weights not in cache and download failed ({exc}). Download {spec.url} "
            f"and put it at {target} (or set INT8TRACK_HOME)"
        ) from exc
    return target


def download(url: str, target: Path, sha256: str | None = None) -> Path:
    """Download ``url`` to ``target`` with a tqdm progress bar; verify sha256 when known; atomic rename.

    A Google Drive confirmation page (large files) is followed once to the file it guards; any other HTML
    answer is an OSError, so a web page is never saved as weights.
    """
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    try:
        with _open_file_url(opener, url) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        if sha256 is not None and sha256_of(partial) != sha256:
            raise OSError(f"sha256 mismatch for {url}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


MAX_PAGE_BYTES = 1 << 20  # a confirmation page is a few kB; never read a large HTML answer into memory


def _open_file_url(opener: urllib.request.OpenerDirector, url: str):
    """The response carrying the file: ``url``'s, or the one its Drive confirmation page points to."""
    response = opener.open(url, timeout=30)
    if response.headers.get_content_type() != "text/html":
        return response
    with response:
        page = response.read(MAX_PAGE_BYTES).decode("utf-8", errors="replace")
    confirmed = gdrive_confirmation_url(page, url)
    if confirmed is None:
        raise OSError(f"{url} answered with an HTML page, not the weights file")
    response = opener.open(confirmed, timeout=30)
    if response.headers.get_content_type() == "text/html":
        response.close()
        raise OSError(f"{url}: Google Drive still answered with an HTML page after confirming the download "
                      "(quota exceeded or access denied?)")
    return response


class _DownloadForm(HTMLParser):
    """The ``download-form`` of a Drive warning page: its action and hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "form" and values.get("id") == "download-form":
            self.action, self._inside = values.get("action", ""), True
        elif tag == "input" and self._inside and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


def gdrive_confirmation_url(page: str, url: str) -> str | None:
    """Where a Google Drive "can't scan for viruses" page sends the user to get the file, or None when ``page``
    is not such a page. Drive has used two forms: a ``download-form`` with hidden inputs (current) and a link
    with a ``confirm=`` token (older)."""
    form = _DownloadForm()
    form.feed(page)
    if form.action:
        return urllib.parse.urljoin(url, html.unescape(form.action)) + "?" + urllib.parse.urlencode(form.fields)
    link = re.search(r'href="([^"]*confirm=[^"]+)"', page)
    if link:
        return urllib.parse.urljoin(url, html.unescape(link.group(1)))
    return None
