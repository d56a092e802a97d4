CREATE TABLE "app_licences" (
	"site_id" uuid PRIMARY KEY NOT NULL,
	"units" integer NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "app_registration_codes" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"code_hash" varchar(64) NOT NULL,
	"site_id" uuid NOT NULL,
	"apartment_id" uuid NOT NULL,
	"created_by" uuid,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone,
	"app_station_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "app_stations" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"site_id" uuid NOT NULL,
	"apartment_id" uuid NOT NULL,
	"installer_id" uuid NOT NULL,
	"name" text NOT NULL,
	"sip_number" varchar(10) NOT NULL,
	"sip_password" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "app_stations_sip_number_unique" UNIQUE("sip_number")
);
--> statement-breakpoint
CREATE TABLE "calls" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"call_id" text NOT NULL,
	"site_id" uuid,
	"caller" varchar(10) NOT NULL,
	"dialled" text NOT NULL,
	"apartment_id" uuid,
	"answered_by" varchar(10),
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"answered_at" timestamp with time zone,
	"ended_at" timestamp with time zone,
	"outcome" text NOT NULL,
	"status" integer,
	"reason" text
);
--> statement-breakpoint
CREATE TABLE "door_events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"site_id" uuid,
	"mac" varchar(12) NOT NULL,
	"relay" integer NOT NULL,
	"method" text NOT NULL,
	"by_station" varchar(10),
	"call_id" text,
	"event_id" text NOT NULL,
	"occurred_at" timestamp with time zone NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sip_registrations" (
	"sip_number" varchar(10) PRIMARY KEY NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"last_registered_at" timestamp with time zone,
	"transport" text,
	"source" text,
	"user_agent" text,
	"reported_at" timestamp (6) with time zone NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "app_licences" ADD CONSTRAINT "app_licences_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "app_registration_codes" ADD CONSTRAINT "app_registration_codes_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "app_registration_codes" ADD CONSTRAINT "app_registration_codes_apartment_id_apartments_id_fk" FOREIGN KEY ("apartment_id") REFERENCES "public"."apartments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "app_registration_codes" ADD CONSTRAINT "app_registration_codes_created_by_accounts_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."accounts"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "app_registration_codes" ADD CONSTRAINT "app_registration_codes_app_station_id_app_stations_id_fk" FOREIGN KEY ("app_station_id") REFERENCES "public"."app_stations"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "app_stations" ADD CONSTRAINT "app_stations_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "app_stations" ADD CONSTRAINT "app_stations_apartment_id_apartments_id_fk" FOREIGN KEY ("apartment_id") REFERENCES "public"."apartments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "app_stations" ADD CONSTRAINT "app_stations_installer_id_accounts_id_fk" FOREIGN KEY ("installer_id") REFERENCES "public"."accounts"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "calls" ADD CONSTRAINT "calls_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "calls" ADD CONSTRAINT "calls_apartment_id_apartments_id_fk" FOREIGN KEY ("apartment_id") REFERENCES "public"."apartments"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "door_events" ADD CONSTRAINT "door_events_site_id_sites_id_fk" FOREIGN KEY ("site_id") REFERENCES "public"."sites"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "app_registration_codes_hash_idx" ON "app_registration_codes" USING btree ("code_hash");--> statement-breakpoint
CREATE INDEX "app_registration_codes_apartment_idx" ON "app_registration_codes" USING btree ("apartment_id");--> statement-breakpoint
CREATE INDEX "app_stations_apartment_idx" ON "app_stations" USING btree ("apartment_id");--> statement-breakpoint
CREATE INDEX "app_stations_site_idx" ON "app_stations" USING btree ("site_id");--> statement-breakpoint
CREATE UNIQUE INDEX "calls_call_id_idx" ON "calls" USING btree ("call_id");--> statement-breakpoint
CREATE INDEX "calls_site_idx" ON "calls" USING btree ("site_id","started_at");--> statement-breakpoint
CREATE UNIQUE INDEX "door_events_device_event_idx" ON "door_events" USING btree ("mac","event_id");--> statement-breakpoint
CREATE INDEX "door_events_site_idx" ON "door_events" USING btree ("site_id","occurred_at");