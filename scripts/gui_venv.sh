#!/usr/bin/env bash
# A virtual environment `.gui/` beside the checkout whose OpenCV opens windows (opencv-python<5, shadowing
# the headless build kerakp installs), on top of this Python's packages: for `kerakp live` in a window and
# for the window test in tests/test_live.py (which also needs Xvfb, xdotool and xwd:
# apt-get install xvfb xdotool x11-apps).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m venv --system-site-packages .gui
.gui/bin/pip install -q "opencv-python<5"
.gui/bin/python -c "import cv2; print('OpenCV', cv2.__version__, 'with a GUI:', cv2.getBuildInformation().count('GTK') > 0)"
