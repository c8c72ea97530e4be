"""Operations (seed 002): backups, restore checks, Redis reconcile, partitions, vacuum."""
