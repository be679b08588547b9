/* store.c - placeholder removed when the first store module lands. */
