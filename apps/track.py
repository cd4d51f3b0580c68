"""`track` command line entry point."""
from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="track",
        description="Track objects in a video with an int8 YOLOX/YOLOv5 detector and ByteTrack.",
    )
    parser.add_argument("source", nargs="?", help="video file, image folder, MOT sequence, camera index or URL")
    parser.add_argument("--int8", action="store_true", help="run the detector in int8")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
