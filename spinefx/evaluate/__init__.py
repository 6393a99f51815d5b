"""From predictions to the paper: per-patient merge, statistics, tables, figures and run information.

May import every earlier stage (learn/ for folds and models) and the shared basics.
"""
