"""Operations actions (seed 002)."""
