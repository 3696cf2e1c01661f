"""Reading the results: what QA managers and trainers see.

1. ``explore``   load an output folder's tables for a period; team overview, leaderboard, failure rates,
                 trends, one call taken apart (the notebooks hold no logic of their own)
2. ``charts``    matplotlib charts of those frames, in a CJK font (or a clear error, never boxes)
3. ``examples``  the clearest failures and cleanest passes of a rule, with clips and a shareable page
"""
