ALTER TABLE "sites" ADD COLUMN "log_unopened_calls" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "outcome" text DEFAULT 'opened' NOT NULL;--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "reason" text;--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "job_id" uuid;--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "requester" text;--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "requested_by" text;--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "apartment_id" uuid;--> statement-breakpoint
ALTER TABLE "door_events" ADD CONSTRAINT "door_events_apartment_id_apartments_id_fk" FOREIGN KEY ("apartment_id") REFERENCES "public"."apartments"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "door_events_job_idx" ON "door_events" USING btree ("job_id");--> statement-breakpoint
CREATE INDEX "door_events_apartment_idx" ON "door_events" USING btree ("apartment_id","occurred_at");--> statement-breakpoint
CREATE INDEX "door_events_mac_idx" ON "door_events" USING btree ("mac","occurred_at");