"""Reading many records at once: the paired statistics that compare configurations on shared measurements,
clustered by image (paired.py), and a study's report (study_report.py)."""
