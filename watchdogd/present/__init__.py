"""What people see: the `scan`/`status` table, systemd's `STATUS=` line, the status document, `history`,
`reap` and `undo` output. Renderers read the pass's typed values (`Assessment.plan`, `Verdict`,
`ActionResult`) and never decide anything again; strings from a DB others write go through `text.safe`."""
