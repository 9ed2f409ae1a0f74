"""Speed measurements of the suite (not tests: machines are noisy, so speed lives here)."""
