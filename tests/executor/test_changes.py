"""What an attempt changed in its workspace, read by git through a private index (real git, temp dirs)."""

import subprocess

from schemas.events import FileChange
from services.executor.changes import Snapshots, parse


def sh(cwd, script: str) -> None:
    subprocess.run(["bash", "-c", script], cwd=cwd, check=True, capture_output=True)


def test_name_status_and_numstat_read_as_file_changes():
    assert parse("M\0a.py\0A\0img.png\0D\0old.txt\0", "3\t1\ta.py\0-\t-\timg.png\0" "0\t4\told.txt\0") == [
        FileChange(path="a.py", status="modified", added=3, removed=1),
        FileChange(path="img.png", status="added"),
        FileChange(path="old.txt", status="deleted", added=0, removed=4)]


async def test_added_modified_and_deleted_files_are_counted_whether_or_not_the_work_commits(tmp_path):
    sh(tmp_path, "printf 'a\\nb\\n' > keep.txt && printf 'x\\n' > gone.txt")
    snapshots = Snapshots(tmp_path)
    before = await snapshots.take()
    sh(tmp_path, "git init -q . && printf 'a\\nc\\nd\\n' > keep.txt && rm gone.txt && printf 'new\\n' > new.py"
                 " && git add -A && git -c user.email=a@b -c user.name=a commit -qm x && printf 'u\\n' > untracked.md")
    compared = await snapshots.compare(before, await snapshots.take())
    snapshots.close()
    assert compared.files == [
        FileChange(path="gone.txt", status="deleted", added=0, removed=1),
        FileChange(path="keep.txt", status="modified", added=2, removed=1),
        FileChange(path="new.py", status="added", added=1, removed=0),
        FileChange(path="untracked.md", status="added", added=1, removed=0)]
    assert snapshots.scratch is None and not list(tmp_path.glob("valor-changes-*"))


async def test_rebuilt_directories_and_ignored_files_do_not_count(tmp_path):
    snapshots = Snapshots(tmp_path)
    before = await snapshots.take()
    sh(tmp_path, "mkdir -p .venv/lib node_modules/x __pycache__ build .claude && touch .venv/lib/a node_modules/x/i.js"
                 " __pycache__/m.pyc build/out.o .claude/s && printf 'build/\\n' > .gitignore")
    compared = await snapshots.compare(before, await snapshots.take())
    snapshots.close()
    assert [f.path for f in compared.files] == [".gitignore"]


async def test_the_workspace_s_own_repository_is_left_as_it_was(tmp_path):
    sh(tmp_path, "git init -q . && echo a > a && git add a && git -c user.email=a@b -c user.name=a commit -qm one")
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path, capture_output=True, text=True).stdout
    snapshots = Snapshots(tmp_path)
    await snapshots.take()
    sh(tmp_path, "echo b >> a")
    await snapshots.take()
    snapshots.close()
    log = subprocess.run(["git", "log", "--oneline"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 1
    assert subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path, capture_output=True,
                          text=True).stdout == status + " M a\n"


async def test_repositories_nested_in_the_workspace_are_read_like_any_directory(tmp_path):
    sh(tmp_path, "mkdir -p done && cd done && git init -q . && echo a > a && git add a"
                 " && git -c user.email=a@b -c user.name=a commit -qm one")
    snapshots = Snapshots(tmp_path)
    before = await snapshots.take()
    sh(tmp_path, "mkdir fresh && cd fresh && git init -q . && echo new > app.py && cd ../done && echo b >> a")
    compared = await snapshots.compare(before, await snapshots.take())
    snapshots.close()
    assert compared.files == [FileChange(path="done/a", status="modified", added=1, removed=0),
                              FileChange(path="fresh/app.py", status="added", added=1, removed=0)]


async def test_what_nested_repositories_ignore_or_rebuild_does_not_count(tmp_path):
    sh(tmp_path, "mkdir -p proj && cd proj && git init -q . && printf 'dist/\\n' > .gitignore")
    snapshots = Snapshots(tmp_path)
    before = await snapshots.take()
    sh(tmp_path, "cd proj && mkdir -p dist .venv/lib __pycache__ && touch dist/x .venv/lib/y __pycache__/m.pyc"
                 " && echo 1 > app.py")
    compared = await snapshots.compare(before, await snapshots.take())
    snapshots.close()
    assert [f.path for f in compared.files] == ["proj/app.py"]
