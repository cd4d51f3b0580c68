"""Real live streams for tests and benchmarks: an RTSP server on 127.0.0.1 fed in real time by ffmpeg, and an
MPEG-TS stream over UDP from ffmpeg alone.

:class:`RtspStream` starts GStreamer's RTSP server (``tests/gst_rtsp_server.py``, run by the system Python with
Debian's ``gir1.2-gst-rtsp-server-1.0``) and an ffmpeg (``imageio-ffmpeg``'s binary) that encodes a video to H.264
and sends it as RTP at the video's own rate (``-re``), looping; the server relays it to every RTSP client, like a
camera. The server can be killed and restarted on the same port while ffmpeg keeps sending (an outage of the
server: the picture goes on meanwhile, as a camera's would). The context manager waits until the stream is
readable and stops everything on exit.

Missing server or ffmpeg: the test is skipped naming what is missing, or fails under ``INT8TRACK_REQUIRE_DATA``
(CI installs both: ``.ci/run``).
"""
from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import DATA_REQUIRED

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("gst_rtsp_server.py")
INSTALL_HINT = ("apt-get install -y gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good "
                "gstreamer1.0-plugins-bad; pip install imageio-ffmpeg")


def ffmpeg_exe() -> str | None:
    """imageio-ffmpeg's ffmpeg binary, None when the package is not installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.cache
def missing_server() -> str | None:
    """Why no RTSP server can run here, or None when it can."""
    if ffmpeg_exe() is None:
        return "imageio-ffmpeg is not installed"
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    probe = subprocess.run([SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check"], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return f"GStreamer's RTSP server cannot run with {SYSTEM_PYTHON}: {last}"
    return None


def require_live_server() -> None:
    """Skip (or, under ``INT8TRACK_REQUIRE_DATA``, fail) the calling test when the RTSP server cannot run."""
    reason = missing_server()
    if reason is None:
        return
    message = f"live stream server unavailable: {reason} (install: {INSTALL_HINT})"
    if DATA_REQUIRED:
        pytest.fail(message + "; INT8TRACK_REQUIRE_DATA is set, so this is a failure", pytrace=False)
    pytest.skip(message)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nothing listens on now (TCP by default, ``socket.SOCK_DGRAM`` for UDP)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _publisher(video: Path, target: str, muxer: str, video_filter: str | None = None) -> subprocess.Popen:
    """ffmpeg sending ``video`` in real time (``-re``), looped, as H.264 with a keyframe every 10 frames and its
    parameter sets in band: the server's decoder (``gst_rtsp_server.py``, which serves Motion JPEG to clients)
    starts, or starts again after an armed restart, within a second. ``video_filter`` (an ffmpeg ``-vf``
    filter, e.g. ``scale=384:288``) changes the picture."""
    command = [ffmpeg_exe() or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
               "-re", "-stream_loop", "-1", "-i", str(video), "-an",
               *(["-vf", video_filter] if video_filter else []),
               "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10",
               "-bsf:v", "dump_extra", "-f", muxer, target]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class RtspStream:
    """``with RtspStream(video) as stream: stream.url`` is ``rtsp://127.0.0.1:PORT/cam``, live at the video's rate.

    ``kill_server()`` / ``start_server()`` stop and restart the RTSP server on the same port (the publisher goes on).
    ``credentials=("user", "pass")`` makes :attr:`url_with_credentials` carry them (the server ignores them).
    """

    def __init__(self, video: Path, mount: str = "/cam", ready_timeout_s: float = 20.0,
                 video_filter: str | None = None) -> None:
        require_live_server()
        self.video = Path(video)
        self.video_filter = video_filter  # ffmpeg -vf applied to the published picture (None: as it is)
        self.mount = mount
        self.port = free_port()
        self.rtp_port = free_port(socket.SOCK_DGRAM)
        self.ready_timeout_s = ready_timeout_s
        self._server: subprocess.Popen | None = None
        self._armed: subprocess.Popen | None = None  # a started server process not listening yet (arm_server)
        self._publisher: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def url_with(self, user: str, password: str) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}{self.mount}"

    def __enter__(self) -> RtspStream:
        try:
            self._publisher = _publisher(self.video, f"rtp://127.0.0.1:{self.rtp_port}?pkt_size=1200", "rtp",
                                         self.video_filter)
            self.start_server()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start_server(self, wait: bool = True) -> None:
        """Start the RTSP server (again); with ``wait``, return once a client can read a frame from it. A server
        :meth:`arm_server` prepared listens at once."""
        if self._armed is None:
            self.arm_server()
        server, self._armed = self._armed, None
        assert server is not None and server.stdin is not None and server.stdout is not None
        try:
            server.stdin.write("go\n")
            server.stdin.flush()
        except OSError:
            pass  # it died: reported below
        self._server = server
        self._expect(server, "ready")
        if wait:
            self.wait_readable()

    def arm_server(self) -> None:
        """Start the server's process (interpreter, GStreamer) without listening yet: :meth:`start_server` then
        opens the port within milliseconds, so an outage lasts what the test asked for."""
        if self._server is not None and self._server.poll() is None:
            raise RuntimeError("the RTSP server is already running")
        if self._armed is not None:
            return
        server = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--mount", self.mount,
             "--udp-port", str(self.rtp_port), "--armed"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._expect(server, "armed")
        self._armed = server

    @staticmethod
    def _expect(server: subprocess.Popen, word: str) -> None:
        line = server.stdout.readline() if server.stdout is not None else ""
        if line.strip() != word:
            _stop(server)
            errors = server.stderr.read() if server.stderr is not None else ""
            raise RuntimeError(f"RTSP server did not start: {line.strip()} {errors.strip()}")

    def restart_publisher(self, video_filter: str | None = None) -> None:
        """Stop ffmpeg and start it again from the video's start, through ``video_filter`` (e.g.
        ``scale=384:288``: a camera restarted at another resolution)."""
        _stop(self._publisher)
        self._publisher = _publisher(self.video, f"rtp://127.0.0.1:{self.rtp_port}?pkt_size=1200", "rtp",
                                     video_filter)

    def kill_server(self) -> None:
        """Kill the RTSP server at once (SIGKILL: connections drop as when a camera loses power)."""
        if self._server is not None and self._server.poll() is None:
            self._server.kill()
            self._server.wait(timeout=5)

    def wait_readable(self) -> None:
        """Block until a client reads a frame from :attr:`url` (RuntimeError after ``ready_timeout_s``)."""
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._publisher is not None and self._publisher.poll() is not None:
                raise RuntimeError(f"ffmpeg publisher exited: {self._publisher.stderr.read().decode(errors='replace')}"
                                   if self._publisher.stderr else "ffmpeg publisher exited")
            if _reads_a_frame(self.url, timeout_s=5.0):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.url}: not readable within {self.ready_timeout_s:g} s")

    def close(self) -> None:
        _stop(self._armed)
        _stop(self._server)
        _stop(self._publisher)


class MpegTsUdpStream:
    """``with MpegTsUdpStream(video) as stream: stream.url`` is ``udp://127.0.0.1:PORT``: ffmpeg alone sending
    MPEG-TS in real time to that port (a reader binds it)."""

    def __init__(self, video: Path) -> None:
        if ffmpeg_exe() is None:
            reason = f"imageio-ffmpeg is not installed (install: {INSTALL_HINT})"
            if DATA_REQUIRED:
                pytest.fail(reason + "; INT8TRACK_REQUIRE_DATA is set, so this is a failure", pytrace=False)
            pytest.skip(reason)
        self.video = Path(video)
        self.port = free_port(socket.SOCK_DGRAM)
        self._publisher: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"udp://127.0.0.1:{self.port}"

    def __enter__(self) -> MpegTsUdpStream:
        self._publisher = _publisher(self.video, f"udp://127.0.0.1:{self.port}?pkt_size=1316", "mpegts")
        return self

    def __exit__(self, *exc) -> None:
        _stop(self._publisher)


class SilentServer:
    """``with SilentServer() as port:`` a TCP server on 127.0.0.1 that accepts connections and never says a word:
    an RTSP URL pointing at it never answers (a camera that hangs, a wrong port of a busy host)."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.accepted.append(self._server.accept()[0])
            except OSError:
                continue

    def __enter__(self) -> int:
        self._thread.start()
        return self.port

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self.accepted:
            connection.close()
        self._server.close()


def _reads_a_frame(url: str, timeout_s: float) -> bool:
    """Whether a client can open ``url`` and decode one frame, within about ``timeout_s``."""
    from int8track.apps.io.sources import SourceError, open_source

    try:
        source = open_source(url, connect_timeout_s=timeout_s)
    except SourceError:
        return False
    try:
        return source.read() is not None
    finally:
        source.close()


def track_command(*args: str) -> list[str]:
    """``python -m int8track.apps.cli.track ARGS`` with this interpreter."""
    return [sys.executable, "-m", "int8track.apps.cli.track", *args]
