"""The commands of a studio several people share: the page's sign-in and fair-use options, the accounts,
and handing runs over.

    studio [--auth [--admin NAME ...]] [--runs-per-person N] [--over-limit refuse|wait] [--models-dir DIR ...]
    studio users add NAME [--admin] | list | remove NAME
    studio runs [give RUN_ID OWNER]

The page's options are documented in README "Who sees what"; on a Space, where the page is started as
`python ui/app.py`, the same options are the variables STUDIO_RUNS_PER_PERSON and STUDIO_OVER_LIMIT.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from engine import accounts, owners
from engine.errors import RunError, StudioError
from engine.train.runs import Run, list_runs, runs_root


def cmd_page(argv: list[str]) -> int:
    """Start the web page (ui/app.py) with the options of a shared studio."""
    p = argparse.ArgumentParser(prog="studio", description="The studio's web page.")
    p.add_argument("--auth", action="store_true", help="sign-in with the accounts of `studio users add`")
    p.add_argument("--admin", action="append", default=[], metavar="NAME",
                   help="an account that sees every run and may stop any (repeatable)")
    p.add_argument("--runs-per-person", type=int, default=None, metavar="N",
                   help="runs a person may hold queued or training at once (default 1; 0: no limit)")
    p.add_argument("--over-limit", choices=("refuse", "wait"), default=None,
                   help="a run past the limit is refused (default), or waits behind everyone else's")
    p.add_argument("--models-dir", action="append", default=[], metavar="DIR",
                   help="a folder of models every person of a shared page may load (repeatable; also "
                        "STUDIO_MODELS_DIRS); otherwise only hub ids, the default and each person's own runs")
    a = p.parse_args(argv)
    for folder in a.models_dir:
        if not Path(folder).expanduser().is_dir():
            raise StudioError(f"--models-dir {folder}: there is no such folder.")
    if a.admin and not a.auth:
        raise StudioError("--admin names an account of --auth; add --auth.")
    if a.runs_per_person is not None and a.runs_per_person < 0:
        raise StudioError(f"--runs-per-person is {a.runs_per_person}: it takes 0 (no limit) or more.")
    from ui.app import main as ui_main  # deferred: gradio, which the other commands do not need

    return ui_main(auth=a.auth, admins=tuple(a.admin), runs_per_person=a.runs_per_person, over_limit=a.over_limit,
                   models_dirs=tuple(a.models_dir))


def cmd_runs(argv: list[str] | None = None) -> int:
    argv = argv or []
    if argv and argv[0] == "give":
        p = argparse.ArgumentParser(prog="studio runs give", description="Hand a run over to another owner.")
        p.add_argument("run")
        p.add_argument("owner", help="local, user:NAME (an account of studio --auth) or hf:NAME")
        a = p.parse_args(argv[1:])
        run = Run(runs_root() / a.run)
        if "/" in a.run or not (run.dir / "config.yaml").exists():
            raise RunError(f"There is no run {a.run}; `studio runs` lists them.")
        if not owners.valid(a.owner):
            raise RunError(f"{a.owner!r} is not an owner: local, user:NAME or hf:NAME.")
        owners.claim(run.dir, a.owner)
        print(f"run {run.id} is now {a.owner}'s")
        return 0
    for run in list_runs():
        s = run.summary()
        loss = f"{s['loss']:.4f}" if isinstance(s["loss"], float) else "-"
        print(f"{s['id']:<32}{s['status']:<13}step {s['step']}/{s['total_steps'] or '?'}  loss {loss:<8}"
              f"  {run.owner}")
    return 0


def cmd_users(argv: list[str]) -> int:
    """The accounts of `studio --auth` (engine/accounts.py)."""
    p = argparse.ArgumentParser(prog="studio users", description="Accounts for `studio --auth`.")
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="make an account, or set its password")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="sees every run and may stop any")
    sub.add_parser("list", help="the accounts")
    rm = sub.add_parser("remove", help="take an account away (its runs stay, the operator's to give)")
    rm.add_argument("name")
    a = p.parse_args(argv)
    if a.action == "list":
        for name, info in sorted(accounts.users().items()):
            print(name + ("  (admin)" if info["admin"] else ""))
        return 0
    if a.action == "remove":
        accounts.remove(a.name)
        print(f"account {a.name} removed from {accounts.accounts_file()}")
        return 0
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {a.name}: ")
        if getpass.getpass("again: ") != password:
            raise accounts.AccountError("The two passwords differ; nothing was changed.")
    else:
        password = sys.stdin.readline().rstrip("\n")
    new = accounts.add(a.name, password, admin=a.admin)
    print(f"account {a.name} {'made' if new else 'updated'}{' (admin)' if a.admin else ''} in "
          f"{accounts.accounts_file()}")
    return 0
