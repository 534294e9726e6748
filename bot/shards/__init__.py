"""Gateway shards across bot processes: which shards this process connects (plan, claim) and when it may IDENTIFY
(identify). The discord.py side is bot.discord_shards."""
