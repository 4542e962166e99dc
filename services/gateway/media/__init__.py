"""Call recordings and transcripts: where the routing engine stored them (s3://, https://, or a development
media folder) turned into something a browser can open."""
