ALTER TABLE "door_events" ALTER COLUMN "by_station" SET DATA TYPE varchar(32);--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "relay_verified" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "by_verified" boolean;--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "call_verified" boolean;--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "reported_at" timestamp with time zone;