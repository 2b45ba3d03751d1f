"""What a user reads after a run: evaluate's side-by-side table and TREC run files, and the HTML report of runs,
evaluations and studies with its plots.
"""
