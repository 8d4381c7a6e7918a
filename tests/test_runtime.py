"""The jaxpot command's restart with glibc's huge-page malloc tunable."""
import subprocess
import sys

from jaxpot import runtime


def test_tunable_is_added_once_and_existing_tunables_are_kept():
    env = runtime.environment_with_tunables({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert not runtime.tunables_wanted(env)                       # marked: never a restart loop
    assert not runtime.tunables_wanted({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})   # user's choice wins
    assert not runtime.tunables_wanted({"JAXPOT_TUNABLES": "0"})


def test_relaunch_restarts_the_same_command_with_the_tunable_where_it_applies():
    code = ("import os, jaxpot.runtime as r; r.relaunch_with_tunables(); "
            "print(os.environ.get('GLIBC_TUNABLES', ''), os.environ.get('JAXPOT_TUNABLES', ''))")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("GLIBC_TUNABLES", "JAXPOT_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    if runtime.tunables_wanted(env):
        assert out.stdout.split() == ["glibc.malloc.hugetlb=1", "done"]
    else:
        assert out.stdout.split() == []
