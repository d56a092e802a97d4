CREATE TABLE "app_status_days" (
	"site_id" uuid NOT NULL,
	"day" text NOT NULL,
	"units_with_apps" integer NOT NULL,
	"active_apps" integer NOT NULL,
	CONSTRAINT "app_status_days_site_id_day_pk" PRIMARY KEY("site_id","day")
);
--> statement-breakpoint
CREATE TABLE "ixg_apps" (
	"site_id" uuid NOT NULL,
	"number" varchar(8) NOT NULL,
	"apartment_id" uuid NOT NULL,
	"name" text NOT NULL,
	"address_book" jsonb NOT NULL,
	CONSTRAINT "ixg_apps_site_id_number_pk" PRIMARY KEY("site_id","number")
);
--> statement-breakpoint
CREATE TABLE "ixg_sites" (
	"site_id" uuid PRIMARY KEY NOT NULL,
	"gateway_mac" varchar(12) NOT NULL,
	"version" integer NOT NULL,
	"sha256" varchar(64) NOT NULL,
	"document" jsonb NOT NULL,
	"uploaded_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "ixg_stations" (
	"site_id" uuid NOT NULL,
	"number" varchar(8) NOT NULL,
	"name" text NOT NULL,
	"type" text NOT NULL,
	"ip" text,
	"building_id" uuid,
	"apartment_id" uuid,
	CONSTRAINT "ixg_stations_site_id_number_pk" PRIMARY KEY("site_id","number")
);
--> statement-breakpoint
ALTER TABLE "apartments" ADD COLUMN "unit_type" text;--> statement-breakpoint
ALTER TABLE "buildings" ADD COLUMN "ixg_number" text;--> statement-breakpoint
ALTER TABLE "sites" ADD COLUMN "managed_by" text;--> statement-breakpoint
ALTER TABLE "app_status_days" ADD CONSTRAINT "app_status_days_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ixg_apps" ADD CONSTRAINT "ixg_apps_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ixg_apps" ADD CONSTRAINT "ixg_apps_apartment_id_apartments_id_fk" FOREIGN KEY ("apartment_id") REFERENCES "public"."apartments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ixg_sites" ADD CONSTRAINT "ixg_sites_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ixg_stations" ADD CONSTRAINT "ixg_stations_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ixg_stations" ADD CONSTRAINT "ixg_stations_building_id_buildings_id_fk" FOREIGN KEY ("building_id") REFERENCES "public"."buildings"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ixg_stations" ADD CONSTRAINT "ixg_stations_apartment_id_apartments_id_fk" FOREIGN KEY ("apartment_id") REFERENCES "public"."apartments"("id") ON DELETE cascade ON UPDATE no action;