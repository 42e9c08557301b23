"""The FileSystem protocol, checked on the real disk and on SimFS with the same tests.

Crash tests are only as good as SimFS's imitation of the OS: if SimFS accepted something the
kernel rejects (or raised a different error), code proven correct in simulation could still fail
in production. Every behaviour here is therefore asserted on both implementations.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.io.fs import FileSystem, OSFileSystem, ReadableFile, WritableFile
from lamina.io.sim import SimFS


@pytest.fixture(params=["os", "sim"])
def fs_root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FileSystem, str]]:
    """(file system, an existing empty directory to work in)."""
    if request.param == "os":
        yield OSFileSystem(), str(tmp_path)
    else:
        fs = SimFS()
        fs.makedirs("/root")
        yield fs, "/root"


def _put(fs: FileSystem, path: str, data: bytes) -> None:
    f = fs.create(path)
    try:
        f.write(data)
        f.fsync()
    finally:
        f.close()


def test_implements_the_protocol(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    assert isinstance(fs, FileSystem)
    w = fs.create(f"{root}/f")
    assert isinstance(w, WritableFile)
    assert w.path == f"{root}/f"
    w.close()
    r = fs.open_read(f"{root}/f")
    assert isinstance(r, ReadableFile)
    assert r.path == f"{root}/f"
    r.close()


def test_create_is_exclusive(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    _put(fs, f"{root}/f", b"first")
    with pytest.raises(FileExistsError):
        fs.create(f"{root}/f")
    fs.mkdir(f"{root}/d")
    with pytest.raises(FileExistsError):
        fs.create(f"{root}/d")
    assert fs.read_file(f"{root}/f") == b"first"


def test_create_needs_an_existing_parent_directory(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    with pytest.raises(FileNotFoundError):
        fs.create(f"{root}/missing/f")
    _put(fs, f"{root}/file", b"")
    with pytest.raises(NotADirectoryError):
        fs.create(f"{root}/file/f")


def test_writes_append_and_accept_any_buffer(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    w = fs.create(f"{root}/f")
    w.write(b"ab")
    w.write(bytearray(b"cd"))
    w.write(memoryview(b"xefx")[1:3])
    w.fsync()
    w.close()
    w.close()  # idempotent
    assert fs.read_file(f"{root}/f") == b"abcdef"
    assert fs.file_size(f"{root}/f") == 6


def test_pread_is_positional_and_short_only_at_eof(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    _put(fs, f"{root}/f", b"0123456789")
    r = fs.open_read(f"{root}/f")
    try:
        assert r.size() == 10
        assert r.pread(3, 4) == b"3456"
        assert r.pread(0, 2) == b"01"
        assert r.pread(8, 10) == b"89"
        assert r.pread(10, 5) == b""
        assert r.pread(100, 5) == b""
    finally:
        r.close()
    r.close()  # idempotent


def test_reader_sees_appends_made_after_it_was_opened(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    w = fs.create(f"{root}/f")
    r = fs.open_read(f"{root}/f")
    w.write(b"late")
    assert r.size() == 4
    assert r.pread(0, 4) == b"late"
    w.close()
    r.close()


def test_reading_missing_files_and_directories_fails_like_the_os(
    fs_root: tuple[FileSystem, str],
) -> None:
    fs, root = fs_root
    with pytest.raises(FileNotFoundError):
        fs.open_read(f"{root}/missing")
    with pytest.raises(FileNotFoundError):
        fs.read_file(f"{root}/missing")
    with pytest.raises(FileNotFoundError):
        fs.file_size(f"{root}/missing")
    with pytest.raises(IsADirectoryError):
        fs.read_file(root)


def test_mkdir_needs_a_parent_and_refuses_existing_names(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    fs.mkdir(f"{root}/d")
    assert fs.is_dir(f"{root}/d")
    with pytest.raises(FileExistsError):
        fs.mkdir(f"{root}/d")
    with pytest.raises(FileNotFoundError):
        fs.mkdir(f"{root}/missing/d")
    _put(fs, f"{root}/f", b"")
    with pytest.raises(FileExistsError):
        fs.mkdir(f"{root}/f")


def test_exists_and_is_dir(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    _put(fs, f"{root}/f", b"")
    fs.mkdir(f"{root}/d")
    assert fs.exists(f"{root}/f") and not fs.is_dir(f"{root}/f")
    assert fs.exists(f"{root}/d") and fs.is_dir(f"{root}/d")
    assert not fs.exists(f"{root}/missing") and not fs.is_dir(f"{root}/missing")
    assert not fs.exists(f"{root}/f/below-a-file")


def test_listdir_is_sorted_and_rejects_files(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    for name in ["b", "a", "c10", "c2"]:
        _put(fs, f"{root}/{name}", b"")
    fs.mkdir(f"{root}/B")
    assert fs.listdir(root) == ["B", "a", "b", "c10", "c2"]
    with pytest.raises(NotADirectoryError):
        fs.listdir(f"{root}/a")
    with pytest.raises(FileNotFoundError):
        fs.listdir(f"{root}/missing")


def test_replace_renames_over_an_existing_file(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    _put(fs, f"{root}/new", b"NEW")
    _put(fs, f"{root}/old", b"OLD")
    fs.replace(f"{root}/new", f"{root}/old")
    assert fs.read_file(f"{root}/old") == b"NEW"
    assert fs.listdir(root) == ["old"]


def test_replace_of_a_missing_source_raises(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    with pytest.raises(FileNotFoundError):
        fs.replace(f"{root}/missing", f"{root}/x")


def test_replace_of_a_file_onto_itself_is_a_no_op(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    _put(fs, f"{root}/f", b"same")
    fs.replace(f"{root}/f", f"{root}/f")
    assert fs.read_file(f"{root}/f") == b"same"


def test_replace_moves_directories_onto_absent_or_empty_ones(
    fs_root: tuple[FileSystem, str],
) -> None:
    fs, root = fs_root
    fs.mkdir(f"{root}/src")
    _put(fs, f"{root}/src/f", b"F")
    fs.replace(f"{root}/src", f"{root}/moved")
    assert fs.read_file(f"{root}/moved/f") == b"F"
    fs.mkdir(f"{root}/empty")
    fs.replace(f"{root}/moved", f"{root}/empty")
    assert fs.listdir(root) == ["empty"]
    assert fs.listdir(f"{root}/empty") == ["f"]


def test_replace_refuses_a_directory_onto_a_non_empty_one(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    fs.mkdir(f"{root}/a")
    fs.mkdir(f"{root}/b")
    _put(fs, f"{root}/b/f", b"")
    with pytest.raises(OSError) as exc:
        fs.replace(f"{root}/a", f"{root}/b")
    assert exc.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    assert fs.listdir(f"{root}/b") == ["f"]


def test_replace_refuses_mixing_files_and_directories(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    fs.mkdir(f"{root}/d")
    _put(fs, f"{root}/f", b"")
    with pytest.raises(IsADirectoryError):
        fs.replace(f"{root}/f", f"{root}/d")
    with pytest.raises(NotADirectoryError):
        fs.replace(f"{root}/d", f"{root}/f")


def test_remove_unlinks_files_only(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    _put(fs, f"{root}/f", b"")
    fs.remove(f"{root}/f")
    assert not fs.exists(f"{root}/f")
    with pytest.raises(FileNotFoundError):
        fs.remove(f"{root}/f")
    fs.mkdir(f"{root}/d")
    with pytest.raises((IsADirectoryError, PermissionError)):  # Linux EISDIR, macOS EPERM
        fs.remove(f"{root}/d")


def test_rmdir_removes_only_empty_directories(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    fs.mkdir(f"{root}/d")
    _put(fs, f"{root}/d/f", b"")
    with pytest.raises(OSError) as exc:
        fs.rmdir(f"{root}/d")
    assert exc.value.errno == errno.ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        fs.rmdir(f"{root}/d/f")
    fs.remove(f"{root}/d/f")
    fs.rmdir(f"{root}/d")
    assert not fs.exists(f"{root}/d")
    with pytest.raises(FileNotFoundError):
        fs.rmdir(f"{root}/d")


def test_fsync_dir_works_on_directories_only(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    _put(fs, f"{root}/f", b"x")
    fs.fsync_dir(root)
    with pytest.raises(NotADirectoryError):
        fs.fsync_dir(f"{root}/f")
    with pytest.raises(FileNotFoundError):
        fs.fsync_dir(f"{root}/missing")


def test_errors_carry_errno_and_path(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    with pytest.raises(OSError) as exc:
        fs.read_file(f"{root}/missing")
    assert exc.value.errno == errno.ENOENT
    assert exc.value.filename == f"{root}/missing"


def test_using_a_closed_handle_fails_with_ebadf(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    w = fs.create(f"{root}/f")
    w.close()
    with pytest.raises(OSError) as exc:
        w.write(b"x")
    assert exc.value.errno == errno.EBADF
    r = fs.open_read(f"{root}/f")
    r.close()
    with pytest.raises(OSError) as exc:
        r.pread(0, 1)
    assert exc.value.errno == errno.EBADF


def test_simfs_fsync_on_a_closed_handle_fails_with_ebadf() -> None:
    fs = SimFS()
    w = fs.create("/f")
    w.close()
    with pytest.raises(OSError) as exc:
        w.fsync()
    assert exc.value.errno == errno.EBADF


def test_osfs_fsync_on_a_closed_handle_fails_with_ebadf(tmp_path: Path) -> None:
    w = OSFileSystem().create(str(tmp_path / "f"))
    w.close()
    with pytest.raises(OSError) as exc:
        w.fsync()
    assert exc.value.errno == errno.EBADF
