"""Stream URLs: which schemes are live, how to open one with a timeout, and how to print one without its
credentials (:func:`redact_url`, the one place that does it)."""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
#: Protocols that only carry live feeds. Anything else behind a URL (HTTP, object storage) may be a recorded
#: file: it is read like one when the container states a frame count.
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://")
#: How long opening (connecting to) a stream may take before it is an error, and how long a read may block.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: FFmpeg options for RTSP when the user set no ``OPENCV_FFMPEG_CAPTURE_OPTIONS``: RTP over the RTSP TCP connection
#: (lost UDP packets corrupt frames, and many networks block the UDP ports), and half a second of probing instead
#: of FFmpeg's 5 s, which would otherwise arrive as a burst of stale frames the live reader has to drop.
RTSP_CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;500000"
_CAPTURE_OPTIONS_VARIABLE = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_capture_options_lock = threading.Lock()


def redact_url(location: str) -> str:
    """``location`` with any user name and password in a URL replaced by ``***`` (``rtsp://***@host/cam``).

    Every place that prints or stores a source's location goes through this, so credentials typed in a URL
    never reach logs, reports or folder names. Paths and camera indices come back unchanged.
    """
    if "://" not in location:
        return location
    try:
        parts = urlsplit(location)
    except ValueError:  # unparsable (e.g. a bad IPv6 literal): hide everything between scheme and path
        scheme, _, rest = location.partition("://")
        return f"{scheme}://***" if "@" in rest else location
    if "@" not in parts.netloc:
        return location
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def stream_name(url: str) -> str:
    """Short name of a stream URL for output folders: the last path component's stem, else ``stream``.

    Only the URL's path is used: the host part may hold credentials.
    """
    try:
        path = urlsplit(url).path
    except ValueError:
        return "stream"
    return Path(path.rstrip("/")).stem or "stream"


def open_url_capture(url: str, timeout_s: float) -> cv2.VideoCapture:
    """FFmpeg capture of ``url`` that gives up connecting, or waiting for a packet, after ``timeout_s``."""
    timeout_ms = max(1, int(timeout_s * 1000))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    options = RTSP_CAPTURE_OPTIONS if url.lower().startswith(("rtsp://", "rtsps://")) else None
    # OpenCV reads FFmpeg's options only from this process-wide variable, at open: set it for this open alone
    # (under a lock, as the reconnecting reader opens from its own thread), never over the user's own setting
    with _capture_options_lock, _environment(_CAPTURE_OPTIONS_VARIABLE, options):
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """Set ``name`` to ``value`` inside the block when it is unset (and ``value`` is not None)."""
    if value is None or name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
