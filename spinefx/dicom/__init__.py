"""DICOM in and out: reading a scanner's series into a checked NIfTI volume, and writing series.

Owns the DICOM format itself; imports only spinefx's shared basics (errors, atomic writes, seeding).
"""
