"""`dvsynth view` and `dvsynth audit`: a local, read-only web app over runs and exports
(`sources`, `queries`, `overview`, `pair`, `server`, `serving`), and the blind audit by
people whose answers live in the run's database (`audit`, `audit_pages`, `audit_sheet`,
`audit_report`)."""
