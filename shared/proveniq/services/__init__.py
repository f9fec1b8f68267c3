"""Services: the ledger's use cases, pure logic over ports (append, publish, ...)."""
