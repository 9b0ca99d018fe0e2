"""plot_curve.py appends the operating-point curve below report.png, and does nothing
without a sweep or a report."""

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ML = Path(__file__).resolve().parents[1]


def _point(t, f, recall, fa):
    return {"failureThreshold": t, "forS": f, "failures": 4, "detected": int(recall * 4), "eventRecall": recall,
            "medianLeadMinutes": 7.0, "p10LeadMinutes": 5.0, "episodes": 6, "falseAlarms": 2,
            "machineDays": 4.0, "falseAlarmsPerMachineDay": fa}


def _run(d: Path) -> dict:
    out = subprocess.run([sys.executable, str(ML / "plot_curve.py"), "--version-dir", str(d)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_curve_goes_below_the_report(tmp_path):
    points = [_point(t / 20, f, 1.0 - t / 40, 2.0 - t / 12) for f in (0, 30) for t in range(1, 20)]
    op = {"budget": 0.5, "chosen": 15, "points": points, "adds": True, "pinned": False,
          "rulesAndForecasts": {**_point(None, None, 0.5, 0.2)}}
    (tmp_path / "metadata.json").write_text(json.dumps({"organizationId": "o", "version": "v1",
                                                        "operatingPoint": op}))
    Image.new("RGB", (640, 300), "white").save(tmp_path / "report.png")
    done = _run(tmp_path)
    img = Image.open(tmp_path / "report.png")
    assert done["height"] == img.height > 300
    assert img.width >= 640
    # The top is the old report, untouched.
    assert img.crop((0, 0, 640, 300)).getcolors() == [(640 * 300, (255, 255, 255))]


def test_nothing_without_a_sweep_or_a_report(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({"organizationId": "o", "version": "v1"}))
    Image.new("RGB", (64, 30), "white").save(tmp_path / "report.png")
    assert "nothing drawn" in _run(tmp_path)["message"]
    assert Image.open(tmp_path / "report.png").size == (64, 30)
    (tmp_path / "report.png").unlink()
    meta = {"organizationId": "o", "version": "v1", "operatingPoint": {"points": [_point(0.5, 0, 1.0, 0.1)]}}
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    assert "nothing drawn" in _run(tmp_path)["message"]
    assert not (tmp_path / "report.png").exists()
