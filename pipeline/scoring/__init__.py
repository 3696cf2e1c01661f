"""The second half of the pipeline, second part: rule results become scores.

1. ``rubric``    rule results -> a score per call (deductions, severity tiers, caps, floor, red lines)
2. ``scorable``  only a whole conversation with the agent in it is scored; the others are unscorable
3. ``scores``    per-agent aggregates per day, ISO week and month; the one "top failing rule"
4. ``tables``    scorability, rules and rubric over a set of calls' stored rows; agent scores rebuilt
"""
