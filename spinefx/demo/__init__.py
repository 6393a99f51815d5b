"""The built-in demo cohort: the sagittal spine phantom and the cohort written from it as DICOM.

Sits before conversion in the DAG; may import dicom/ (to write and read its series) and the shared basics.
"""
