"""risk_score: explainable fraud scoring over the ledger's evidence, with a human in the loop.

    evidence    the vocabulary the model reads (claim.*, document.uploaded, custody.*, asset.*)
    facts       the `RiskFacts` port: a derived, tenant-scoped index folded from ledger events
    features    the five deterministic features (pure functions over facts)
    model       the deterministic score, its level and `MODEL_VERSION`
    assessment  the `Assessor` port (Gemini), prompt minimisation, the combine/review policy
    results     the `RiskResults` port: latest score per claim, review state, the review queue
    scoring     the use case `RiskScorer`: fold, score, append `risk.scored` / `risk.reviewed`

Nothing here does I/O itself: stores, the ledger and Gemini come in through ports.
"""
