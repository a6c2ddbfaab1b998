"""Jobs and cluster config for the DCluster fault tests (spot notices, hangs, retries)."""

from __future__ import annotations

FAULT_JOBS = {
    # Deterministic text output, written atomically; checkpoints on a spot notice and resumes.
    "steps.py": """
        import argparse
        import hashlib
        import json
        import os
        import time
        from pathlib import Path


        def main(argv):
            p = argparse.ArgumentParser()
            p.add_argument("--out", required=True)
            p.add_argument("--steps", type=int, default=40)
            p.add_argument("--delay", type=float, default=0.05)
            p.add_argument("--ignore-notice", action="store_true")
            p.add_argument("--trace", default=None)
            args = p.parse_args(argv)
            notice = os.environ.get("DCLUSTER_SPOT_NOTICE_FILE", "")
            ckpt = Path(os.environ["DCLUSTER_CHECKPOINT_DIR"]) / "progress.json"
            lines = json.loads(ckpt.read_text())["lines"] if ckpt.exists() else []
            if args.trace:
                with open(args.trace, "a") as fh:
                    fh.write(f"{os.environ['DCLUSTER_CAPACITY_TYPE']} from {len(lines)}\\n")
            for i in range(len(lines), args.steps):
                if not args.ignore_notice and notice and os.path.exists(notice):
                    tmp = ckpt.with_name("progress.tmp")
                    tmp.write_text(json.dumps({"lines": lines}))
                    os.replace(tmp, ckpt)
                    print(f"spot notice {Path(notice).read_text()} at step {i}: checkpointed", flush=True)
                    return 75
                lines.append(f"{i} {hashlib.sha1(str(i).encode()).hexdigest()}")
                time.sleep(args.delay)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name("." + out.name + ".tmp")
            tmp.write_text("\\n".join(lines) + "\\n")
            os.replace(tmp, out)
            return 0
    """,
    # Touches its heartbeat once, then (on the stalled attempts) stops touching it.
    "heartbeat.py": """
        import os
        import time
        from pathlib import Path


        def main(argv):
            hb = Path(os.environ["DCLUSTER_HEARTBEAT_FILE"])
            hb.touch()
            if os.environ["DCLUSTER_ATTEMPT"] in argv:
                time.sleep(60)
            for _ in range(3):
                hb.touch()
                time.sleep(0.05)
            return 0
    """,
    # Waits until its gate file exists (at most a minute), then exits 0.
    "gated.py": """
        import os
        import time


        def main(argv):
            deadline = time.monotonic() + 60
            while not os.path.exists(argv[0]) and time.monotonic() < deadline:
                time.sleep(0.05)
            print("gate open on", os.environ["DCLUSTER_CAPACITY_TYPE"], flush=True)
            return 0
    """,
    # Naps briefly; hangs on the attempts named in argv.
    "napper.py": """
        import os
        import sys
        import time


        def main(argv):
            seconds = float(argv[0]) if argv else 0.05
            if os.environ["DCLUSTER_ATTEMPT"] in argv[1:]:
                time.sleep(60)
            time.sleep(seconds)
            print("napped", os.environ["DCLUSTER_CAPACITY_TYPE"], flush=True)
            return 0
    """,
}


FAST_CONFIG = {
    "on_demand": {"resident_min": 0},
    "spot": {"request_timeout_s": 0.5, "disable_cooldown_s": 1.0},
    "monitor": {
        "health_check_interval_s": 0.1,
        "heartbeat_timeout_s": 0.6,
        "hanging_min_samples": 3,
        "hanging_min_s": 1.0,
    },
    "simulation": {"notice_s": 1.0},
}
