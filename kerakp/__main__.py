"""The `kerakp` command (`python -m kerakp`): the command line, or one line where OpenCV cannot load."""
import sys


def run():
    """Run the command line (`kerakp.cli`). OpenCV's window build (opencv-python) needs libGL, which a server may
    lack: there, one line naming both ways out instead of an import traceback, exit code 2."""
    try:
        import cv2  # noqa: F401  (every command reads, draws or writes images with it)
    except ImportError as err:
        print(f"error: OpenCV cannot load ({str(err).strip().splitlines()[0][:160]}): install libGL (Debian, Ubuntu: "
              "apt-get install libgl1), or on a server without a display replace opencv-python with opencv-python-headless "
              "(pip uninstall -y opencv-python && pip install --force-reinstall \"opencv-python-headless<5\")", file=sys.stderr)
        sys.exit(2)
    from kerakp.cli import main

    main()


if __name__ == "__main__":
    run()
