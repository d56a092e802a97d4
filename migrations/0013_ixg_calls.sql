ALTER TABLE "app_stations" ADD COLUMN "ixg_app" varchar(8);--> statement-breakpoint
ALTER TABLE "calls" ADD COLUMN "ixg_station" varchar(8);--> statement-breakpoint
ALTER TABLE "door_events" ADD COLUMN "ixg_station" varchar(8);--> statement-breakpoint
CREATE UNIQUE INDEX "app_stations_ixg_app_idx" ON "app_stations" USING btree ("site_id","ixg_app");