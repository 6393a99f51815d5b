"""Image work on converted volumes: T1W-to-T2W registration, lesion patches and the patch-file contract.

May import dicom/ and the shared basics; never learn/ or evaluate/.
"""
