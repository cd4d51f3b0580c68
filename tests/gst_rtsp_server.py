"""A real RTSP server for the live-stream tests: GStreamer's RTSP server relaying an RTP/H.264 feed received on UDP
(served as Motion JPEG).

Run by the *system* Python (``/usr/bin/python3``, Debian's ``python3-gi`` and ``gir1.2-gst-rtsp-server-1.0``),
not the project's virtual environment: PyGObject and the GStreamer typelibs come from apt. ``live_server.py``
starts it; ffmpeg ``-re`` feeds it H.264 over RTP at the video's own rate, so clients receive frames in real
time (a server reading a file itself delivers them as fast as it can). Prints ``ready`` once it listens.
With ``--armed``, it loads GStreamer, prints ``armed`` and waits for a line on stdin before it listens: a test
restarting the server after an outage starts it early, so the port stays closed for exactly the outage asked
for, not the outage plus the interpreter's and GStreamer's start (about a second on a loaded machine).

    /usr/bin/python3 tests/gst_rtsp_server.py --port 8554 --mount /cam --udp-port 5600
    /usr/bin/python3 tests/gst_rtsp_server.py --check   # exit 0 when every element it needs is installed
"""
from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 (the versions must be chosen first)

#: GStreamer elements of the relay pipeline, and the Debian package of each
ELEMENTS = {"udpsrc": "gstreamer1.0-plugins-good", "rtpjitterbuffer": "gstreamer1.0-plugins-good",
            "rtph264depay": "gstreamer1.0-plugins-good", "h264parse": "gstreamer1.0-plugins-bad",
            "openh264dec": "gstreamer1.0-plugins-bad", "videoconvert": "gstreamer1.0-plugins-base",
            "jpegenc": "gstreamer1.0-plugins-good", "rtpjpegpay": "gstreamer1.0-plugins-good"}


def missing_elements() -> list[str]:
    """The pipeline's elements GStreamer cannot find, each with the package that has it."""
    return [f"{name} ({package})" for name, package in ELEMENTS.items() if Gst.ElementFactory.find(name) is None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="RTSP port on 127.0.0.1")
    parser.add_argument("--mount", default="/cam", help="path of the stream (default /cam)")
    parser.add_argument("--udp-port", type=int, help="where the RTP/H.264 feed arrives")
    parser.add_argument("--check", action="store_true", help="only check that everything needed is installed")
    parser.add_argument("--armed", action="store_true", help="print 'armed', listen once a line comes on stdin")
    args = parser.parse_args()
    Gst.init(None)
    if missing := missing_elements():
        print(f"missing GStreamer elements: {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.check:
        return 0
    if args.port is None or args.udp_port is None:
        parser.error("--port and --udp-port are required")
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # One pipeline shared by every client, like a camera. It decodes the H.264 feed and serves it as Motion JPEG:
    # re-payloading the H.264 as it came (depay ! parse ! pay) delivered one of x264's two slices per frame damaged
    # on every frame (bottom-half PSNR 9-21 dB against the source; benchmarks/README.md), where each JPEG frame
    # stands alone and arrives whole (0 of 156 frames damaged, under load). The socket buffer holds a keyframe's
    # burst (the default 208 KB lost its last slice about once a second).
    factory.set_launch(
        f"( udpsrc address=127.0.0.1 port={args.udp_port} buffer-size=4194304 caps=\"application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96\" "
        "! rtpjitterbuffer latency=50 ! rtph264depay ! h264parse ! openh264dec ! videoconvert ! jpegenc quality=90 "
        "! rtpjpegpay name=pay0 pt=26 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.mount, factory)
    if args.armed:
        print("armed", flush=True)
        if not sys.stdin.readline():
            return 0  # the test went away without asking for the server
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
