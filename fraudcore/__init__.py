"""Plain fraud-analytics logic: no luigi, no services; imported by tasks, jobs and tools."""
