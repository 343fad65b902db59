"""spec -> plan: resolve every name, selector and duration into a `Plan`."""
