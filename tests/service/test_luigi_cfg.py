"""luigi.cfg as luigi reads it: the SPEC's [core] spellings run quietly, typos still warn."""

import subprocess
import sys
from pathlib import Path

from tests.support import REPO

PROBE = "import batch_tasks, luigi.interface; luigi.interface.core()"


def test_spec_core_keys_do_not_warn_but_a_typo_does(tmp_path: Path) -> None:
    cfg = tmp_path / "luigi.cfg"
    cfg.write_text((REPO / "luigi.cfg").read_text().replace("[core]\n", "[core]\nwrokers = 2\n", 1))
    run = subprocess.run(
        [sys.executable, "-W", "default", "-c", PROBE],
        cwd=REPO,
        env={"LUIGI_CONFIG_PATH": str(cfg), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "'wrokers'" in run.stderr
    for key in ("default_scheduler_host", "default_scheduler_port", "rpc_connect_timeout"):
        assert f"'{key}'" not in run.stderr
