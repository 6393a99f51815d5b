"""DICOM in and out: reading a scanner's series into a checked NIfTI volume, and writing series;
also a user's NIfTI (a cohort already converted) checked into the same volume + sidecar contract.

Owns the DICOM format itself; imports only spinefx's shared basics (errors, atomic writes, seeding).
"""
