ALTER TABLE "devices" ADD COLUMN "session_epoch" bigint;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "session_gateway" text;