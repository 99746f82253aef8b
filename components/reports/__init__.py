"""HTML reports and pictures people look at."""
