/* analysis.c - placeholder removed when the first analysis module lands. */
