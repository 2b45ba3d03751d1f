"""What a user reads after a run: evaluate's side-by-side table and TREC run files (evaltable), and ragtrain report's
self-contained HTML page of training curves, evaluations, studies and options (page, from pagedata's pure data,
drawn by plots).
"""
