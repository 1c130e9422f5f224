"""Package-level promises: light import, version, console script."""

import subprocess
import sys


def test_importing_cathodeflow_and_its_pipeline_does_not_import_tensorflow_or_keras():
    code = (
        "import sys, cathodeflow, cathodeflow.cli, cathodeflow.study.pipeline, "
        "cathodeflow.measure.describe, cathodeflow.study.describe, cathodeflow.synth, cathodeflow.report.build, cathodeflow.models, cathodeflow.stages.unet, cathodeflow.study.train_unet;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_version_and_train_sr_without_a_config_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cathodeflow.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("cathodeflow ")
    r = subprocess.run([sys.executable, "-m", "cathodeflow.cli", "train", "sr", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--config" in r.stderr
