"""The second half of the pipeline, first part: stored utterances become findings and rule results.

Read in this order:

1. ``options``   what each rule type's table in ``rules.toml`` may say, with documented defaults
2. ``lexicon``   load and validate the phrase lists and ``rules.toml`` (every problem, file and line)
3. ``matching``  phrases found in utterances by text or by sound (survives speech recognition)
3a. ``details``  the numbers, dates, times, amounts and addresses said, and whether two are the same
3b. ``promises`` a follow-up promised, and when it falls due
4. ``checks``    one function per rule type: a call in, one typed ``CheckResult`` out
5. ``engine``    every rule on every call: ``Hit`` and ``RuleResult`` rows; a crashing rule fails the call
6. ``dialogue``  typed dialogues for trying rules without audio (``callqa rules test``)
"""
