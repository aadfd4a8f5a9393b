"""Read rosbag2 (sqlite3, mcap) and ROS 1 bags with ``rosbags``, and salvage what a damaged bag still holds.

``open_bag`` gives a ``BagReader`` that lists the topics and yields deserialised messages in time order.
A bag cut short (the robot lost power, the disk filled up) has no index or footer, and ``rosbags`` refuses
to open it. Then a salvage reader walks the file from its start and yields every message up to the damage:

- sqlite3: the database is copied with its missing pages zero-filled (the header says how many there
  were), so SQLite reads the rows that survived; the original file is never written to;
- mcap: the records are parsed one after another (chunks uncompressed with zstd or lz4);
- ROS 1: the records are parsed one after another (chunks uncompressed with bz2 or lz4).

In both cases, when the messages run out because of damage, ``messages`` raises ``BagDamagedError`` after
yielding the good ones, so a caller can keep its results up to that point and report the error.
"""

from __future__ import annotations

import bz2
import logging
import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from vl_tracker_ros.rosbags_types import typestore

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"
ROS1_MAGIC = b"#ROSBAG V2.0\n"


class BagError(RuntimeError):
    """The bag cannot be used: not a bag, no suitable topic, unreadable."""


class BagDamagedError(BagError):
    """The bag ends in damage; every message before it was delivered."""


@dataclass(frozen=True)
class Topic:
    name: str
    msgtype: str  # ROS 2 style: pkg/msg/Name
    count: int | None  # None when unknown (salvaged bags)


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_ns: int  # time the message was recorded
    msg: Any  # deserialised message (rosbags dataclass); None when it does not deserialise
    error: str = ""  # why ``msg`` is None


def ros2_type(name: str) -> str:
    """``sensor_msgs/Image`` (ROS 1) -> ``sensor_msgs/msg/Image``; ROS 2 names unchanged."""
    parts = name.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else name


def describe_topics(topics: Iterable[Topic]) -> str:
    listed = [f"{t.name} [{t.msgtype}]" + (f" ({t.count} msgs)" if t.count is not None else "") for t in topics]
    return ", ".join(listed) if listed else "no topics at all"


class BagReader:
    """A readable bag: ``topics`` and ``messages(topic names)``. Use as a context manager."""

    path: Path
    salvaged: bool = False
    damage: str = ""

    @property
    def topics(self) -> list[Topic]:
        raise NotImplementedError

    def messages(self, topics: Iterable[str]) -> Iterator[BagMessage]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AnyBag(BagReader):
    """A healthy bag, read by rosbags' AnyReader."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader = AnyReader([path], default_typestore=typestore())
        self._reader.open()

    @property
    def topics(self) -> list[Topic]:
        counts: dict[tuple[str, str], int] = {}
        for c in self._reader.connections:
            counts[(c.topic, c.msgtype)] = counts.get((c.topic, c.msgtype), 0) + c.msgcount
        return [Topic(t, m, n) for (t, m), n in sorted(counts.items())]

    def messages(self, topics: Iterable[str]) -> Iterator[BagMessage]:
        wanted = set(topics)
        connections = [c for c in self._reader.connections if c.topic in wanted]
        count = 0
        try:
            for connection, log_ns, raw in self._raw_messages(connections, wanted):
                count += 1
                yield _deserialized(self._reader.deserialize, connection.topic, connection.msgtype, log_ns, raw)
        except Exception as exc:  # rosbags raises several kinds (ReaderError, sqlite3, struct, lz4...)
            raise BagDamagedError(f"{self.path}: damaged after {count} messages: {exc}") from None

    def _raw_messages(self, connections: list, wanted: set[str]) -> Iterator[tuple[Any, int, bytes]]:
        """rosbags matches a rosbag2 file's topics to metadata.yaml's including the QoS text; bags written
        by older rosbag2 releases (metadata version 4) store different QoS text in the two places, and
        rosbags then yields no message at all. So rosbag2 files are read per storage, matching topics by
        name and type only."""
        storages = getattr(getattr(self._reader.readers[0], "storage", None), "storages", None)
        if not self.path.is_dir() or storages is None:
            yield from self._reader.messages(connections=connections)
            return
        message_compressed = getattr(self._reader.readers[0], "compression_mode", None) == "message"
        for storage in storages:
            chosen = [c for c in storage.connections if c.topic in wanted]
            if not chosen:
                continue
            for connection, log_ns, raw in storage.messages(chosen):
                if message_compressed:
                    from backports import zstd

                    raw = zstd.decompress(raw)
                yield connection, log_ns, raw

    def close(self) -> None:
        self._reader.close()


# ---------------------------------------------------------------------------------------------- salvage
class _SalvagedBag(BagReader):
    """Messages read record by record from the start of a damaged file (counts unknown)."""

    salvaged = True

    def __init__(self, path: Path, topics: list[tuple[str, str]], records: Iterator[tuple[str, str, int, bytes]],
                 deserialize, reason: str):
        self.path = path
        self.damage = reason
        self._deserialize = deserialize
        self._topics = dict(topics)
        self._records = records

    @property
    def topics(self) -> list[Topic]:
        return [Topic(name, msgtype, None) for name, msgtype in sorted(self._topics.items())]

    def messages(self, topics: Iterable[str]) -> Iterator[BagMessage]:
        wanted = set(topics)
        count = 0
        try:
            for topic, msgtype, log_ns, raw in self._records:
                if topic not in wanted:
                    continue
                count += 1
                yield _deserialized(self._deserialize, topic, msgtype, log_ns, raw)
        except _Damage as exc:
            raise BagDamagedError(f"{self.path}: damaged after {count} messages: {exc} ({self.damage})") from None
        raise BagDamagedError(f"{self.path}: the bag is damaged ({self.damage}); read the {count} messages before "
                              "the damage")


def _deserialized(deserialize, topic: str, msgtype: str, log_ns: int, raw: bytes) -> BagMessage:
    """One message; a message that does not deserialise is passed on with the reason (not fatal)."""
    try:
        return BagMessage(topic, msgtype, log_ns, deserialize(raw, msgtype))
    except Exception as exc:
        return BagMessage(topic, msgtype, log_ns, None, f"{msgtype} message does not deserialise: "
                          f"{type(exc).__name__}: {exc}")


class _Damage(Exception):
    """Internal: where a salvage walk stopped."""


def _read_exact(handle, size: int, what: str) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise _Damage(f"file ends inside {what}")
    return data


# --- sqlite3
def _sqlite_salvage(path: Path) -> tuple[list[tuple[str, str]], Iterator[tuple[str, str, int, bytes]]]:
    db3 = _rosbag2_files(path, ".db3")
    if len(db3) != 1:
        raise BagError(f"{path}: expected one .db3 file, found {len(db3)}")
    src = db3[0]
    with open(src, "rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise BagError(f"{src} is not an SQLite database")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages = struct.unpack(">I", header[28:32])[0]
    tmpdir = Path(tempfile.mkdtemp(prefix="vl_tracker_salvage_"))
    copy = tmpdir / "bag.db3"
    shutil.copyfile(src, copy)
    if os.path.getsize(copy) < page_size * pages:
        os.truncate(copy, page_size * pages)  # zero-filled (sparse) pages where the file was cut
    db = sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True)
    try:
        topics = {row[0]: (row[1], row[2]) for row in db.execute("SELECT id, name, type FROM topics")}
    except sqlite3.DatabaseError as exc:
        db.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise BagError(f"{src}: even the topic table is lost ({exc})") from None

    def rows() -> Iterator[tuple[str, str, int, bytes]]:
        try:
            for topic_id, log_ns, data in db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
                if topic_id in topics:
                    name, msgtype = topics[topic_id]
                    yield name, msgtype, int(log_ns), bytes(data)
            raise _Damage("the database was cut short")
        except sqlite3.DatabaseError as exc:
            raise _Damage(f"sqlite: {exc}") from None
        finally:
            db.close()
            shutil.rmtree(tmpdir, ignore_errors=True)

    return list(topics.values()), rows()


# --- mcap
def _mcap_string(buf: memoryview, pos: int) -> tuple[str, int]:
    (size,) = struct.unpack_from("<I", buf, pos)
    return bytes(buf[pos + 4:pos + 4 + size]).decode("utf-8", "replace"), pos + 4 + size


def _mcap_records(buf: memoryview, state: dict) -> Iterator[tuple[str, str, int, bytes]]:
    """Schema, Channel and Message records of ``buf`` (a chunk's content or the file's records)."""
    pos = 0
    while pos < len(buf):
        if pos + 9 > len(buf):
            raise _Damage("file ends inside a record header")
        opcode = buf[pos]
        (length,) = struct.unpack_from("<Q", buf, pos + 1)
        body = buf[pos + 9:pos + 9 + length]
        if len(body) != length:
            raise _Damage(f"file ends inside a record (opcode 0x{opcode:02x})")
        pos += 9 + length
        if opcode == 0x03:  # Schema
            (schema_id,) = struct.unpack_from("<H", body, 0)
            name, _ = _mcap_string(body, 2)
            state["schemas"][schema_id] = name
        elif opcode == 0x04:  # Channel
            channel_id, schema_id = struct.unpack_from("<HH", body, 0)
            topic, _ = _mcap_string(body, 4)
            state["channels"][channel_id] = (topic, state["schemas"].get(schema_id, ""))
        elif opcode == 0x05:  # Message
            channel_id, _, log_ns = struct.unpack_from("<HIQ", body, 0)
            if channel_id in state["channels"]:
                topic, msgtype = state["channels"][channel_id]
                yield topic, msgtype, log_ns, bytes(body[22:])
        elif opcode == 0x06:  # Chunk
            _, _, size, _ = struct.unpack_from("<QQQI", body, 0)
            compression, p = _mcap_string(body, 28)
            (records_len,) = struct.unpack_from("<Q", body, p)
            data = bytes(body[p + 8:p + 8 + records_len])
            try:
                if compression == "zstd":
                    from backports import zstd  # rosbags' own dependency before Python 3.14

                    data = zstd.decompress(data)
                elif compression == "lz4":
                    import lz4.frame

                    data = lz4.frame.decompress(data)
                elif compression:
                    raise _Damage(f"unknown chunk compression {compression!r}")
            except _Damage:
                raise
            except Exception as exc:
                raise _Damage(f"a chunk does not decompress: {exc}") from None
            yield from _mcap_records(memoryview(data), state)
        elif opcode == 0x0F:  # DataEnd: the summary follows, the data section is complete
            state["complete"] = True
            return


def _mcap_salvage(path: Path) -> tuple[list[tuple[str, str]], Iterator[tuple[str, str, int, bytes]]]:
    files = _rosbag2_files(path, ".mcap")
    if len(files) != 1:
        raise BagError(f"{path}: expected one .mcap file, found {len(files)}")
    data = files[0].read_bytes()
    if not data.startswith(MCAP_MAGIC):
        raise BagError(f"{files[0]} is not an MCAP file")
    def walk(state: dict) -> Iterator[tuple[str, str, int, bytes]]:
        yield from _mcap_records(memoryview(data)[len(MCAP_MAGIC):], state)
        if not state["complete"]:
            raise _Damage("the file was cut short (no data-end record)")

    # A dry walk lists the channels (a cut file has no summary to read them from).
    listing: dict = {"schemas": {}, "channels": {}, "complete": False}
    try:
        for _ in walk(listing):
            pass
    except _Damage:
        pass
    return sorted(set(listing["channels"].values())), walk({"schemas": {}, "channels": {}, "complete": False})


# --- ROS 1
def _ros1_fields(header: bytes) -> dict[str, bytes]:
    fields, pos = {}, 0
    while pos + 4 <= len(header):
        (size,) = struct.unpack_from("<I", header, pos)
        name, _, value = header[pos + 4:pos + 4 + size].partition(b"=")
        fields[name.decode("ascii", "replace")] = value
        pos += 4 + size
    return fields


def _ros1_records(data: bytes, connections: dict[int, tuple[str, str]],
                  definitions: dict[str, str]) -> Iterator[tuple[str, str, int, bytes]]:
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise _Damage("file ends inside a record")
        (hlen,) = struct.unpack_from("<I", data, pos)
        header = data[pos + 4:pos + 4 + hlen]
        if len(header) != hlen or pos + 8 + hlen > len(data):
            raise _Damage("file ends inside a record header")
        (dlen,) = struct.unpack_from("<I", data, pos + 4 + hlen)
        body = data[pos + 8 + hlen:pos + 8 + hlen + dlen]
        if len(body) != dlen:
            raise _Damage("file ends inside a record")
        pos += 8 + hlen + dlen
        fields = _ros1_fields(header)
        op = fields.get("op", b"\x00")[:1]
        if op == b"\x07":  # connection
            conn = struct.unpack("<I", fields["conn"])[0]
            info = _ros1_fields(body)
            topic = fields.get("topic", info.get("topic", b"")).decode("utf-8", "replace")
            msgtype = ros2_type(info.get("type", b"").decode("ascii", "replace"))
            connections[conn] = (topic, msgtype)
            definitions.setdefault(msgtype, info.get("message_definition", b"").decode("utf-8", "replace"))
        elif op == b"\x02":  # message data
            conn = struct.unpack("<I", fields["conn"])[0]
            sec, nsec = struct.unpack("<II", fields["time"])
            if conn in connections:
                topic, msgtype = connections[conn]
                yield topic, msgtype, sec * 1_000_000_000 + nsec, body
        elif op == b"\x05":  # chunk
            compression = fields.get("compression", b"none").decode()
            try:
                if compression == "bz2":
                    body = bz2.decompress(body)
                elif compression == "lz4":
                    import lz4.frame

                    body = lz4.frame.decompress(body)
                elif compression != "none":
                    raise _Damage(f"unknown chunk compression {compression!r}")
            except _Damage:
                raise
            except Exception as exc:
                raise _Damage(f"a chunk does not decompress: {exc}") from None
            yield from _ros1_records(body, connections, definitions)


def _ros1_salvage(path: Path) -> tuple[list[tuple[str, str]], Iterator[tuple[str, str, int, bytes]], Any]:
    data = path.read_bytes()
    if not data.startswith(ROS1_MAGIC):
        raise BagError(f"{path} is not a ROS 1 bag (version 2.0)")
    definitions: dict[str, str] = {}

    def records() -> Iterator[tuple[str, str, int, bytes]]:
        yield from _ros1_records(data[len(ROS1_MAGIC):], {}, {})

    # Connection records come before their messages; list them with a dry walk that keeps no payloads.
    seen: dict[int, tuple[str, str]] = {}
    try:
        for _ in _ros1_records(data[len(ROS1_MAGIC):], seen, definitions):
            pass
    except _Damage:
        pass
    # Deserialise with the bag's own definitions (they are in its connection records), as rosbags does.
    own = get_typestore(Stores.EMPTY)
    for msgtype, text in definitions.items():
        if text.strip():
            try:
                own.register(get_types_from_msg(text, msgtype))
            except Exception as exc:  # a definition rosbags cannot parse: Noetic's own is used for it
                log.debug("cannot register %s from the bag: %s", msgtype, exc)
    noetic = get_typestore(Stores.ROS1_NOETIC)

    def deserialize(raw: bytes, msgtype: str) -> Any:
        return (own if msgtype in own.types else noetic).deserialize_ros1(raw, msgtype)

    return sorted(set(seen.values())), records(), deserialize


def _rosbag2_files(path: Path, suffix: str) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix == suffix)


def _salvage(path: Path, reason: str) -> BagReader:
    if path.is_dir():
        if _rosbag2_files(path, ".db3"):
            topics, records = _sqlite_salvage(path)
        elif _rosbag2_files(path, ".mcap"):
            topics, records = _mcap_salvage(path)
        else:
            raise BagError(f"{path}: no .db3 or .mcap file: not a rosbag2 folder ({reason})")
        store = typestore()

        def deserialize(raw: bytes, msgtype: str) -> Any:
            return store.deserialize_cdr(raw, msgtype)
    else:
        topics, records, deserialize = _ros1_salvage(path)

    return _SalvagedBag(path, topics, records, deserialize, reason)


def open_bag(path: str | Path) -> BagReader:
    """A rosbag2 folder (sqlite3 or mcap) or a ROS 1 ``.bag`` file. A damaged bag opens in salvage mode
    (``reader.salvaged``, ``reader.damage``); raises BagError when nothing can be read."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path} does not exist")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        # rosbag2 writes metadata.yaml when recording ends: a recorder that died leaves only the data file.
        if not (_rosbag2_files(path, ".db3") or _rosbag2_files(path, ".mcap")):
            raise BagError(f"{path} is a folder without metadata.yaml or a .db3/.mcap file: not a rosbag2 bag")
        reason = "metadata.yaml is missing (the recording did not end cleanly)"
    else:
        try:
            return _AnyBag(path)
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
    log.warning("%s cannot be opened normally (%s); salvaging the messages before the damage", path, reason)
    try:
        return _salvage(path, reason)
    except (OSError, _Damage) as exc:
        raise BagError(f"{path}: cannot be read ({reason}; salvage failed: {exc})") from None
