"""Scan a finished run for the demo cohort's fake PHI (used by the workflow tests).

The demo writes realistic identity values into every DICOM header (spinefx.demo.cohort.demo_phi). None of
them may appear in anything the workflow writes: results/ (outside the input cohort results/demo/),
logs/, benchmarks/ and the HTML report — including inside gzip streams (NIfTI), HDF5 attributes, PNG
text chunks and base64-embedded report content.
"""

from __future__ import annotations

import base64
import gzip
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

BASE64_BLOB = re.compile(rb"[A-Za-z0-9+/]{200,}={0,2}")


def phi_needles(phi: dict[str, str]) -> set[bytes]:
    """Byte strings to look for: each identifying value; person names (Family^Given) also as
    "Given Family", "Family Given" and "Family, Given". They match case-insensitively as whole
    words. A first name alone is not searched: common names occur in any text (the report's
    embedded JavaScript cites a "John")."""
    needles: set[str] = set()
    for key, value in phi.items():
        if key in ("PatientSex", "PatientAge"):
            continue  # not identifying on their own ("M", "067Y")
        value = str(value).strip()
        if len(value) >= 4:
            needles.add(value)
        parts = [p for p in value.split("^") if p]
        if len(parts) >= 2:
            family, given = parts[0], parts[1]
            needles.update({f"{given} {family}", f"{family} {given}", f"{family}, {given}"})
    return {n.encode() for n in needles}


def _gunzip(data: bytes) -> bytes:
    """The decompressed stream, or nothing when it is not valid gzip."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError):
        return b""


def _inflate(data: bytes) -> bytes:
    try:
        return zlib.decompressobj().decompress(data)
    except zlib.error:
        return b""


def _views(path: Path, data: bytes) -> Iterator[bytes]:
    """The file's bytes, and every decodable layer inside it."""
    yield data
    if data[:2] == b"\x1f\x8b":
        yield _gunzip(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        for match in re.finditer(rb"zTXt|iTXt", data):
            chunk = data[match.end() : match.end() + 4096]
            start = chunk.find(b"\x00\x00")
            if start >= 0:
                yield _inflate(chunk[start + 2 :])
    if path.suffix in (".html", ".htm", ".json", ".txt"):
        for blob in BASE64_BLOB.findall(data):
            try:
                decoded = base64.b64decode(blob + b"=" * (-len(blob) % 4))
            except ValueError:
                continue
            yield decoded
            if decoded[:2] == b"\x1f\x8b":
                yield _gunzip(decoded)


def scan(roots: Iterable[Path], needles: set[bytes], exclude: Iterable[Path] = ()) -> list[str]:
    """Every (file, value) where a needle occurs; an empty list means the run is clean.

    All needles are searched in one pass per file view (one alternation), so large files (model
    weights, the embedded report) are read once, not once per needle."""
    excluded = [p.resolve() for p in exclude]
    if not needles:
        return []
    by_lower = {n.lower(): n for n in needles}
    hits = []
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if any(path.resolve().is_relative_to(e) for e in excluded):
                continue
            found: set[bytes] = set()
            for view in _views(path, path.read_bytes()):
                found |= _whole_words(view.lower(), by_lower)
            hits += [f"{path}: {n.decode(errors='replace')}" for n in sorted(found)]
    return hits


def _whole_words(lowered: bytes, by_lower: dict[bytes, bytes]) -> set[bytes]:
    """The needles (original case) that occur in ``lowered`` as whole words, case-insensitively.

    A substring test (C speed) picks the few needles present at all; only those go through the
    word-boundary regex, so a model file of hundreds of MB is not run through a regex engine."""
    present = [n for n in by_lower if n in lowered]
    if not present:
        return set()
    alternation = b"|".join(re.escape(n) for n in sorted(present, key=len, reverse=True))
    pattern = re.compile(rb"(?<![a-z0-9])(?:" + alternation + rb")(?![a-z0-9])")
    return {by_lower[m.group(0)] for m in pattern.finditer(lowered)}
