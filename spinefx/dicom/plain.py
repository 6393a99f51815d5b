"""Refuse, or split, a series that is not one plain stack of original slices.

Why: a Siemens MOSAIC, several echoes in one series, derived or secondary-capture images, repeated
InstanceNumbers or a mix of image types all convert to a volume that looks plausible and is wrong
(one 384x384 "slice", interleaved echoes, a screenshot without geometry, a lesion slice that maps to
two images). Each case here is a ``SpinefxError`` naming the file and the fix, or, for echoes, a
split the config chooses (``convert.echo``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pydicom

from spinefx.errors import SpinefxError
from spinefx.settings import section_defaults

Member = tuple[Path, pydicom.Dataset]
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and its multi-frame variants .7.1 - .7.4
_SIEMENS_MOSAIC_COUNT = (0x0019, 0x100A)  # NumberOfImagesInMosaic (private, also in the CSA header)


def image_type(ds: pydicom.Dataset) -> tuple[str, ...]:
    """ImageType values, upper case ('ORIGINAL', 'PRIMARY', 'M', ...)."""
    value = ds.get("ImageType", [])
    if isinstance(value, str):
        value = [value]
    return tuple(str(v).strip().upper() for v in value)


def _joined(kind: tuple[str, ...]) -> str:
    return "\\".join(kind) or "(none)"


def _mosaic_count(ds: pydicom.Dataset) -> int | None:
    element = ds.get(_SIEMENS_MOSAIC_COUNT)
    try:
        return None if element is None else int(element.value)
    except (TypeError, ValueError):
        return None


def _refuse_special(members: list[Member], patient: str | None) -> None:
    for path, ds in members:
        if str(ds.get("SOPClassUID", "")).startswith(_SECONDARY_CAPTURE):
            raise SpinefxError(
                "secondary-capture image (a screenshot or a picture made from images): it has no "
                "trustworthy slice geometry.",
                patient=patient,
                path=path,
                fix="choose the original MR series (SOP class MR Image Storage) of the acquisition.",
            )
        if "MOSAIC" in image_type(ds):
            n = _mosaic_count(ds)
            count = f" holding {n} slices" if n else ""
            raise SpinefxError(
                f"Siemens MOSAIC image{count}: the slices are tiles of one {ds.Columns}x{ds.Rows} image, "
                "and spinefx does not unpack mosaics (it would write one wrong slice).",
                patient=patient,
                path=path,
                fix="convert this series with dcm2niix and give the NIfTI, or export the series "
                "from the scanner as single-slice images (mosaic off).",
            )


def _refuse_mixed_types(members: list[Member], patient: str | None) -> None:
    types = Counter(image_type(ds) for _, ds in members)
    if len(types) > 1:
        example = {}
        for path, ds in members:
            example.setdefault(image_type(ds), path)
        listing = "; ".join(f"{_joined(t)}: {n} image(s), e.g. {example[t].name}" for t, n in types.items())
        raise SpinefxError(
            f"the series mixes image types ({listing}): original and derived images, or magnitude and "
            "phase, are different volumes.",
            patient=patient,
            path=example[min(types, key=types.get)],
            fix="remove the images of the other type, or export only the original magnitude images.",
        )


def _refuse_derived(members: list[Member], patient: str | None, allow_derived: bool) -> None:
    derived = [(p, ds) for p, ds in members if image_type(ds)[:1] == ("DERIVED",)]
    if derived and not allow_derived:
        path, ds = derived[0]
        kind = image_type(ds)
        raise SpinefxError(
            f"the series is DERIVED (ImageType {_joined(kind)}): a reformat, subtraction or map made "
            "from an acquisition, not the acquisition itself.",
            patient=patient,
            path=path,
            fix="choose the ORIGINAL series, or set `convert: {allow_derived: true}` if this derived "
            "series is what you want (e.g. a reconstruction the study read).",
        )


def _echo(ds: pydicom.Dataset) -> int | None:
    value = ds.get("EchoNumbers")
    if value in (None, ""):
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0]
    return int(value)


def _split_echoes(
    members: list[Member], patient: str | None, echo: int | None, where: Path
) -> tuple[list[Member], list[str]]:
    echoes = Counter(_echo(ds) for _, ds in members)
    if len(echoes) <= 1:
        if echo is not None and echo not in echoes:
            raise SpinefxError(
                f"convert.echo is {echo} but the series has only echo {next(iter(echoes))}.",
                patient=patient,
                path=where,
                fix="set convert.echo to null (take the single echo).",
            )
        return members, []
    te = {}
    for _, ds in members:
        te.setdefault(_echo(ds), ds.get("EchoTime"))
    listing = ", ".join(f"echo {e} (TE {te[e]} ms, {n} images)" for e, n in sorted(echoes.items(), key=str))
    if echo is None or echo not in echoes:
        raise SpinefxError(
            f"the series holds {len(echoes)} echoes: {listing}"
            + ("" if echo is None else f"; convert.echo {echo} is not one of them")
            + ".",
            patient=patient,
            path=where,
            fix="set `convert: {echo: N}` to the EchoNumbers value to convert.",
        )
    return [m for m in members if _echo(m[1]) == echo], [f"took echo {echo} of {listing}"]


def _refuse_duplicate_instances(members: list[Member], patient: str | None) -> None:
    seen: dict[int, Path] = {}
    for path, ds in members:
        number = ds.get("InstanceNumber")
        if number in (None, "") or int(ds.get("NumberOfFrames", 1) or 1) > 1:
            continue
        if int(number) in seen:
            raise SpinefxError(
                f"InstanceNumber {int(number)} is used by {seen[int(number)].name} and {path.name}: a lesion "
                "given by its InstanceNumber could not be mapped to one slice.",
                patient=patient,
                path=path,
                fix="remove the repeated/copied file, or re-export the series so each image has its own "
                "InstanceNumber.",
            )
        seen[int(number)] = path


def plain_stack(
    members: list[Member],
    dicom_dir: Path,
    *,
    patient: str | None = None,
    echo: int | None = None,
    allow_derived: bool | None = None,
) -> tuple[list[Member], list[str]]:
    """The members of one plain stack (one echo of original images, no mosaic or screenshot) and notes."""
    if allow_derived is None:
        allow_derived = bool(section_defaults("convert")["allow_derived"])
    _refuse_special(members, patient)
    _refuse_derived(members, patient, allow_derived)
    return _split_echoes(members, patient, echo, dicom_dir)


def check_one_kind(members: list[Member], patient: str | None = None) -> None:
    """Refuse a stack whose images differ in ImageType (original/derived, magnitude/phase)."""
    _refuse_mixed_types(members, patient)


def check_unique_instances(members: list[Member], patient: str | None = None) -> None:
    """Refuse two images with one InstanceNumber (run after the position checks, which say more
    about a copied file)."""
    _refuse_duplicate_instances(members, patient)


__all__ = ["check_one_kind", "check_unique_instances", "image_type", "plain_stack"]
