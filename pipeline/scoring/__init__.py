"""The second half of the pipeline, second part: rule results become scores.

1. ``rubric``  rule results -> a score per call (deductions, severity tiers, caps, floor, red lines)
2. ``scores``  per-agent aggregates per day, ISO week and month; the one "top failing rule"
3. ``tables``  rules and rubric applied to a set of calls' stored rows; agent scores rebuilt from storage
"""
