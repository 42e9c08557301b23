"""JSON records with a version first and a checksum of their own body.

Used for `metadata.json` (a part's commit record), `<epoch>.snp` manifests, `reason.json` and the
store descriptor. One strict cattrs converter: no silent int("7"), no extra keys, no missing keys.
Every malformed record becomes one `RecordError` carrying readable reasons; callers attach the part
and file and turn it into `CorruptPartError` / `CorruptManifestError`.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import cattrs
from cattrs.preconf.json import make_converter
from cattrs.v import format_exception

from lamina.errors import EnvironmentIOError
from lamina.format.checksum import crc32c
from lamina.io.fs import FileSystem, proves_damage

T = TypeVar("T")

CHECKSUM_KEY = "body_crc32c"


class RecordError(ValueError):
    def __init__(self, reasons: list[str], *, version: bool = False) -> None:
        self.reasons = reasons
        #: True when the record is well-formed but of a format version this Lamina cannot read.
        self.version = version
        super().__init__("; ".join(reasons))


def read_record_file(fs: FileSystem, path: str) -> bytes:
    """The bytes of a record file. An entry that is not one (a directory, a symlink or FIFO,
    which are never opened) is a damaged record: `RecordError`. Any other OS error says nothing
    about the record (EMFILE, EACCES, EIO): `EnvironmentIOError`, never "damaged"."""
    try:
        return fs.read_file(path)
    except OSError as e:
        if proves_damage(e):
            raise RecordError([f"{path} cannot be read as a record: {e}"]) from None
        raise EnvironmentIOError(f"reading {path}", e) from None


def _strict(tp: type) -> Any:
    def structure(value: Any, _t: Any) -> Any:
        # bool is an int subclass; a JSON `true` is never a valid count or offset.
        if type(value) is not tp and not (tp is float and type(value) is int):
            raise TypeError(f"expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value

    return structure


def _make_converter() -> cattrs.Converter:
    c = make_converter(forbid_extra_keys=True)
    for tp in (int, str, float, bool):
        c.register_structure_hook(tp, _strict(tp))
    return c


CONVERTER = _make_converter()


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def dump_record(record: Any) -> bytes:
    """Serialise an attrs record: fields in declaration order (format_version first) + checksum."""
    body = CONVERTER.unstructure(record)
    body[CHECKSUM_KEY] = crc32c(_canonical(body))
    return json.dumps(body, indent=1).encode() + b"\n"


def _explain(exc: BaseException, tp: type | None) -> str:
    """cattrs' description of a failure, plus a validator's own message ("next_part_id ... is
    outside the part ID space" says more than "invalid value")."""
    text = format_exception(exc, tp)
    return f"{text}: {exc}" if isinstance(exc, ValueError) and str(exc) else text


def load_record(data: bytes, cls: type[T], supported_versions: tuple[int, ...]) -> T:
    """Parse and verify a record; raises RecordError naming everything wrong with it."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError([f"not valid JSON: {e}"]) from None
    if not isinstance(body, dict):
        raise RecordError(["not a JSON object"])
    # The version is checked before anything else so a newer format reads as "written by a newer
    # Lamina", not as a pile of unknown fields.
    version = body.get("format_version")
    if type(version) is not int:
        raise RecordError([f"format_version missing or not an integer: {version!r}"])
    if version not in supported_versions:
        raise RecordError(
            [f"format_version {version} is not supported (this Lamina reads {supported_versions})"],
            version=True,
        )
    stored = body.pop(CHECKSUM_KEY, None)
    if type(stored) is not int:
        raise RecordError([f"{CHECKSUM_KEY} missing or not an integer"])
    actual = crc32c(_canonical(body))
    if actual != stored:
        raise RecordError([f"body checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"])
    # The checksum covers the parsed body, not the bytes: a lost trailing newline (a torn last
    # sector) or other damage to mere layout would pass it. A record is only trusted if it is
    # byte for byte what dump_record writes (issue 7's fuzzer found the lost newline).
    if json.dumps({**body, CHECKSUM_KEY: stored}, indent=1).encode() + b"\n" != data:
        raise RecordError(["bytes differ from the canonical form (damaged layout or a torn end)"])
    try:
        return CONVERTER.structure(body, cls)
    except cattrs.BaseValidationError as e:
        raise RecordError(cattrs.transform_error(e, path=cls.__name__, format_exception=_explain)) from None
    except (TypeError, ValueError) as e:
        raise RecordError([str(e.args[0] if e.args else e)]) from None
