"""The first half of the pipeline: a recording becomes utterances.

Read in this order, which is the order a recording goes through them:

1. ``discover``   the night's recordings and their metadata (manifest.csv or defaults)
2. ``audio``      decode any format to 16 kHz float, channels apart; voice activity per channel
3. ``roles``      which channel is the agent's and which the customer's
4. ``turns``      one channel's voice activity -> turns (a hold always ends one)
5. ``model``      the speech model: resolve, assemble and verify the bundled one, load once
6. ``decode``     turns packed into model windows, decoded in batches, a second look at skipped turns
7. ``guard``      what Whisper invents on silence and noise never becomes anybody's words
8. ``utterances`` each turn's screened words -> one stored utterance
9. ``privacy``    phone, ID-card and bank-card numbers masked in every text field
10. ``recording`` all of the above for one file: ``process_recording`` -> ``CallResult``
"""
