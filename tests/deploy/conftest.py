"""The deploy scripts are run as scripts from deploy/ (standard library only); tests import them the same way."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
