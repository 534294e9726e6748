-- Atelier schema, version 4: reserved. The delivery-identity change brings its own 0004 (discord_posts); this
-- no-op step only keeps the numbering without a gap until that file replaces it.
SELECT 1;
